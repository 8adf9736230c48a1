"""Synthetic trajectories that satisfy the dataset schema, for tests and smoke runs.

STYLE.md: tiny HDF5 files are built by fixtures, never downloaded.  These follow the
schema of DESIGN.md's "Trajectory datasets (HDF5)" section and stay inside the joint
limits; the motion is a first-order lag of the joints towards random-walk targets
around the canonical grasp (DexNDM Appendix C), not physics.  Deterministic per seed,
so a test (or a subprocess it starts) can regenerate trajectory ``i`` from ``i``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from dexndm.hand import constants as hc
from dexndm.sim.control import ACTION_SCALE

#: Width of the synthetic privileged observation.
PRIVILEGED_WIDTH = 8


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def random_trajectory(seed: int, T: int = 20, *, optional: bool = True,
                      privileged_width: int = PRIVILEGED_WIDTH) -> dict[str, Any]:
    """One trajectory of T transitions: q [T+1, 16], target [T, 16], axis [3], gravity_dir [3], ...

    With ``optional`` it also has action [T, 16], object_pose [T+1, 7], fingertip_state
    [T+1, 4, 13], privileged_obs [T, P], object_id, category and params.  Float arrays
    are float32, so a written and re-read trajectory compares exactly.
    """
    rng = np.random.default_rng(seed)
    action = rng.uniform(-1.0, 1.0, size=(T, hc.NUM_JOINTS))
    target = np.empty((T, hc.NUM_JOINTS))
    q = np.empty((T + 1, hc.NUM_JOINTS))
    q[0] = hc.clamp_to_limits(hc.CANONICAL_POSE + rng.normal(0.0, 0.05, hc.NUM_JOINTS))
    last = initial = q[0].copy()
    for t in range(T):
        last = target[t] = hc.clamp_to_limits(last + ACTION_SCALE * action[t])   # a_t = a_{t-1} + a/24
        q[t + 1] = hc.clamp_to_limits(q[t] + 0.5 * (target[t] - q[t]))
    traj: dict[str, Any] = {
        "q": q.astype(np.float32), "target": target.astype(np.float32),
        "initial_target": initial.astype(np.float32),
        "axis": _unit(rng).astype(np.float32), "gravity_dir": _unit(rng).astype(np.float32),
        "success": bool(rng.random() < 0.8),
    }
    if optional:
        quat = rng.normal(size=(T + 1, 4))
        tip_quat = rng.normal(size=(T + 1, 4, 4))
        tips = rng.normal(0.0, 0.05, size=(T + 1, 4, 13))
        tips[..., 3:7] = tip_quat / np.linalg.norm(tip_quat, axis=-1, keepdims=True)
        category = ("cuboids", "cylinders", "complex")[seed % 3]
        traj.update({
            "action": action.astype(np.float32),
            "object_pose": np.concatenate([rng.normal(0.0, 0.02, (T + 1, 3)),
                                           quat / np.linalg.norm(quat, axis=1, keepdims=True)], 1).astype(np.float32),
            "fingertip_state": tips.astype(np.float32),
            "privileged_obs": rng.normal(size=(T, privileged_width)).astype(np.float32),
            "object_id": f"{category}/{seed % 5:02d}", "category": category,
            "params": {"object_mass": float(rng.uniform(0.03, 0.1)), "friction": float(rng.uniform(0.5, 1.5))},
        })
    return traj


def write_random_file(path: str | os.PathLike, n: int, *, seed: int = 0, lengths: tuple[int, int] = (8, 24),
                      optional: bool = True, domain: Mapping[str, Any] | None = None,
                      source: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None,
                      **writer_kwargs: Any) -> Path:
    """Write n random trajectories (seeds seed..seed+n-1, T in ``lengths``) to a new file."""
    from dexndm.data.writer import TrajectoryWriter

    with TrajectoryWriter(path, domain=domain or {"name": "synthetic", "params": {}},
                          source=source or {"kind": "synthetic", "seed": seed}, config=config or {},
                          **writer_kwargs) as writer:
        for i in range(n):
            T = int(np.random.default_rng(seed + i).integers(lengths[0], lengths[1] + 1))
            writer.append(random_trajectory(seed + i, T, optional=optional))
    return Path(path)
