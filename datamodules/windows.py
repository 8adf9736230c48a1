"""Window indexing over concatenated trajectories, in pure numpy (DexNDM Sec. 3.2-3.3, Appendix C).

Trajectories arrive as ``TrajectoryFile.load_all`` returns them: per-step fields
concatenated over time, ``q`` rows of trajectory n at ``state_offsets[n]:state_offsets[n+1]``
(T_n + 1 states) and ``target``/``action`` rows at ``step_offsets[n]:step_offsets[n+1]``
(T_n steps; ``target[t]`` is commanded at q[t] and q[t+1] follows it).

Two kinds of sample, each named by (trajectory position n, step t):

* dynamics (joint-wise neural dynamics, Sec. 3.3): a history of W steps ending at t,
  ``q_hist = q[t-W+1..t]`` [W, 16] and ``a_hist = target[t-W+1..t]`` [W, 16], label
  ``q_next = q[t+1]`` [16]; t runs from W-1 to T_n-1 so a window never leaves its
  trajectory.
* bc (generalist distillation, Sec. 3.2): the deploy observation
  (``dexndm.sim.observations.deploy_layout``) at step t, a history of (q_k, a_{k-1}) for
  k = t-H+1..t, then wrist quaternion and rotation axis; label = the policy's relative
  action ``action[t]``.  t runs from 0 to T_n-1; steps before the start are padded with
  (q_0, initial_target), a still hand, exactly as the env fills its history at reset.

Every gather is one fancy-indexing call: no Python loop over samples.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from dexndm.hand import constants as hc
from dexndm.sim.observations import DEPLOY_HISTORY, deploy_layout
from dexndm.sim.orientations import orientation_quat

J = hc.NUM_JOINTS
KINDS = ("dynamics", "bc")
#: Fields each kind reads from a trajectory file.
FIELDS: dict[str, tuple[str, ...]] = {
    "dynamics": ("q", "target"),
    "bc": ("q", "target", "initial_target", "action", "axis", "gravity_dir"),
}


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown sample kind {kind!r}; choose one of {list(KINDS)}")
    return kind


def first_step(kind: str, window: int) -> int:
    """Smallest valid t of a sample: W-1 for dynamics windows, 0 for (padded) bc samples."""
    return window - 1 if check_kind(kind) == "dynamics" else 0


def window_counts(lengths: np.ndarray, kind: str, window: int) -> np.ndarray:
    """Number of samples of each trajectory ([N]) for trajectory lengths T_n ([N])."""
    return np.maximum(np.asarray(lengths, dtype=np.int64) - first_step(kind, window), 0)


def window_index(lengths: np.ndarray, kind: str, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Every sample of trajectories with lengths T_n: (trajectory position n [S], step t [S]),
    in trajectory order then time order."""
    counts = window_counts(lengths, kind, window)
    traj = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    t = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts) + first_step(kind, window)
    return traj, t


def gather_dynamics(data: Mapping[str, np.ndarray], traj: np.ndarray, t: np.ndarray, window: int) -> dict[str, np.ndarray]:
    """Dynamics samples (traj [S], t [S]) -> q_hist [S, W, 16], a_hist [S, W, 16], q_next [S, 16]."""
    k = t[:, None] + np.arange(-window + 1, 1, dtype=np.int64)[None]            # [S, W]
    if (k < 0).any():
        raise ValueError(f"dynamics windows need t >= W-1 = {window - 1}")
    so, st = data["state_offsets"][traj], data["step_offsets"][traj]
    return {
        "q_hist": data["q"][so[:, None] + k].astype(np.float32, copy=False),
        "a_hist": data["target"][st[:, None] + k].astype(np.float32, copy=False),
        "q_next": data["q"][so + t + 1].astype(np.float32, copy=False),
    }


def gather_bc(data: Mapping[str, np.ndarray], traj: np.ndarray, t: np.ndarray,
              history: int = DEPLOY_HISTORY) -> dict[str, np.ndarray]:
    """BC samples (traj [S], t [S]) -> obs [S, deploy dim] (deploy layout) and action [S, 16]."""
    k = t[:, None] + np.arange(-history + 1, 1, dtype=np.int64)[None]           # [S, H]
    so, st = data["state_offsets"][traj], data["step_offsets"][traj]
    q_k = data["q"][so[:, None] + np.maximum(k, 0)]                              # pad: q_0
    a_prev = np.where((k - 1 >= 0)[..., None], data["target"][st[:, None] + np.maximum(k - 1, 0)],
                      data["initial_target"][traj][:, None, :])                  # a_{-1} before the start
    proprio = np.stack([q_k, a_prev], axis=2).reshape(len(t), -1)                # [S, H*2*16]
    quat = orientation_quat(data["gravity_dir"][traj])
    obs = np.concatenate([proprio, quat, data["axis"][traj]], axis=1).astype(np.float32)
    assert obs.shape[1] == deploy_layout(history).dim
    return {"obs": obs, "action": data["action"][st + t].astype(np.float32, copy=False)}


def gather(kind: str, data: Mapping[str, np.ndarray], traj: np.ndarray, t: np.ndarray, window: int) -> dict[str, np.ndarray]:
    """Samples of ``kind``; ``window`` is W for dynamics and the history H for bc."""
    if check_kind(kind) == "dynamics":
        return gather_dynamics(data, traj, t, window)
    return gather_bc(data, traj, t, window)


def sample_shapes(kind: str, window: int) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes of each batch key."""
    if check_kind(kind) == "dynamics":
        return {"q_hist": (window, J), "a_hist": (window, J), "q_next": (J,)}
    return {"obs": (deploy_layout(window).dim,), "action": (J,)}


def reduce_axes(kind: str, key: str) -> int:
    """How many leading sample axes statistics average over (q_hist/a_hist share stats over W)."""
    return 2 if key in ("q_hist", "a_hist") else 1
