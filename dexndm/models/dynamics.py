"""Neural dynamics of the hand: joint-wise (DexNDM) and the factorisations it is compared to.

Every model maps a W-step history of joint positions and commanded targets,
H_t = {q_j, a_j}_{j=t-W+1..t} (``q_hist``, ``a_hist`` ``[B, W, 16]``), to the next joint
positions q_{t+1} ``[B, 16]``.  They differ only in which part of H_t each output sees:

- ``JointWiseDynamics`` (Sec. 3.3, "Joint-Wise Neural Dynamics"): joint i's next state
  from its own history h_t^i = {q_j^i, a_j^i} alone, q_{t+1}^i = f_{psi_i}(h_t^i), one
  network per joint.  The projection is the information bottleneck argued for in A.3
  (a joint's history suffices to predict its next state) and A.4 (it cannot reconstruct
  the system-wide coupling, so it does not overfit to it).
- ``FingerWiseDynamics`` (Sec. 4.2 / Fig. 8 ablation; ASAP-style per-finger compensator,
  B.4): finger f's 4 joints from that finger's history.
- ``WholeHandDynamics`` (Sec. 3.3, Qi et al. 2022; Tables 4-5 "Whole Hand NDM"): all
  joints from the whole history.
- ``SharedJointDynamics`` (B.4, UAN baseline): one network shared by every joint, on the
  joint's own history (optionally tagged with a one-hot joint id).

The factorisation is structural, not learned: joint-wise and finger-wise models run
their per-joint / per-finger networks as one ``GroupedMLP`` whose groups never mix.
Pre-training on sim rollouts and fine-tuning on real data (Appendix C, "Dynamics Model
Training") reuse the same module; training loops live elsewhere.

Normalisation is part of the module so that a checkpoint carries it: ``stats`` (see
``dynamics_stats``) are registered as buffers, inputs are standardised per joint, and
the network predicts the standardised delta q_{t+1} - q_t (``delta=True``, default) or
the standardised q_{t+1}.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from dexndm.hand.constants import FINGER_JOINTS, NUM_JOINTS
from dexndm.models.layers import GroupedMLP

J = NUM_JOINTS
#: Keys of the normalisation statistics, each ``[16]`` (or a scalar, broadcast).
STAT_KEYS: tuple[str, ...] = ("q_mean", "q_std", "a_mean", "a_std", "dq_mean", "dq_std")
_STD_FLOOR = 1e-6


def dynamics_stats(q: torch.Tensor, a: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-joint normalisation statistics from trajectories ``q, a [..., T, 16]``.

    ``dq`` is the one-step difference along T.  Returns the ``STAT_KEYS`` dict, ``[16]`` each.
    """
    q, a = torch.as_tensor(q, dtype=torch.float32), torch.as_tensor(a, dtype=torch.float32)
    dq = (q[..., 1:, :] - q[..., :-1, :]).reshape(-1, J)
    q, a = q.reshape(-1, J), a.reshape(-1, J)
    return {"q_mean": q.mean(0), "q_std": q.std(0), "a_mean": a.mean(0), "a_std": a.std(0),
            "dq_mean": dq.mean(0), "dq_std": dq.std(0)}


class DynamicsModel(nn.Module):
    """Base: normalise ``(q_hist, a_hist)``, run ``_core``, de-normalise to q_{t+1}.

    Subclasses implement ``_core(qn, an) -> [B, 16]`` on standardised inputs
    ``[B, W, 16]`` and return the standardised target (delta or absolute).
    """

    name: str = ""

    def __init__(self, window: int, hidden: int = 256, depth: int = 3, delta: bool = True,
                 stats: Mapping[str, Any] | None = None, activation: str = "elu"):
        super().__init__()
        if window < 1 or hidden < 1 or depth < 0:
            raise ValueError(f"need window >= 1, hidden >= 1, depth >= 0; got {window}, {hidden}, {depth}")
        self.window, self.hidden, self.depth, self.delta = int(window), int(hidden), int(depth), bool(delta)
        self.activation = activation
        for key in STAT_KEYS:
            default = 0.0 if key.endswith("mean") else 1.0
            self.register_buffer(key, torch.full((J,), default))
        if stats is not None:
            self.set_stats(stats)

    # -- configuration -----------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Constructor keywords (without ``stats``, which travel as buffers in the state dict)."""
        return {"name": self.name, "window": self.window, "hidden": self.hidden, "depth": self.depth,
                "delta": self.delta, "activation": self.activation}

    @torch.no_grad()
    def set_stats(self, stats: Mapping[str, Any]) -> None:
        """Load normalisation statistics (``STAT_KEYS``, ``[16]`` or scalar each); stds are floored."""
        missing = [k for k in STAT_KEYS if k not in stats]
        if missing:
            raise ValueError(f"dynamics stats lack {missing}; pass all of {list(STAT_KEYS)} "
                             f"(dynamics_stats(q, a) computes them from trajectories)")
        for key in STAT_KEYS:
            value = torch.as_tensor(np.asarray(stats[key]), dtype=torch.float32).expand(J).clone()
            if key.endswith("std"):
                value = value.clamp_min(_STD_FLOOR)
            getattr(self, key).copy_(value)

    # -- forward -------------------------------------------------------------------------
    def _check(self, q_hist: torch.Tensor, a_hist: torch.Tensor) -> None:
        expected = (self.window, J)
        if q_hist.dim() != 3 or q_hist.shape[1:] != expected or a_hist.shape != q_hist.shape:
            raise ValueError(f"{type(self).__name__} expects q_hist and a_hist [B, {self.window}, {J}], "
                             f"got {tuple(q_hist.shape)} and {tuple(a_hist.shape)}")

    def predict_normalized(self, q_hist: torch.Tensor, a_hist: torch.Tensor) -> torch.Tensor:
        """Standardised prediction ``[B, 16]`` (the space a training loss should use)."""
        self._check(q_hist, a_hist)
        qn = (q_hist - self.q_mean) / self.q_std
        an = (a_hist - self.a_mean) / self.a_std
        return self._core(qn, an)

    def normalized_target(self, q_last: torch.Tensor, q_next: torch.Tensor) -> torch.Tensor:
        """Standardised training target ``[B, 16]`` for q_t = ``q_last`` and q_{t+1} = ``q_next``."""
        if self.delta:
            return (q_next - q_last - self.dq_mean) / self.dq_std
        return (q_next - self.q_mean) / self.q_std

    def forward(self, q_hist: torch.Tensor, a_hist: torch.Tensor) -> torch.Tensor:
        """Next joint positions q_{t+1} ``[B, 16]`` from ``q_hist, a_hist [B, W, 16]``."""
        return self.denormalize(q_hist[:, -1], self.predict_normalized(q_hist, a_hist))

    def denormalize(self, q_last: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """q_{t+1} ``[B, 16]`` in radians from a standardised prediction and q_t = ``q_last``."""
        if self.delta:
            return q_last + out * self.dq_std + self.dq_mean
        return out * self.q_std + self.q_mean

    def _core(self, qn: torch.Tensor, an: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _per_joint(qn: torch.Tensor, an: torch.Tensor) -> torch.Tensor:
    """``[B, W, 16]`` x2 -> per-joint histories ``[B, 16, W*2]`` (time-major pairs (q, a))."""
    x = torch.stack((qn, an), dim=-1)                 # [B, W, 16, 2]
    return x.permute(0, 2, 1, 3).flatten(2)           # [B, 16, W*2]


class JointWiseDynamics(DynamicsModel):
    """DexNDM: 16 separate MLPs, joint i: h_t^i ``[W*2]`` -> q_{t+1}^i, as one ``GroupedMLP`` (G=16)."""

    name = "jointwise"

    def __init__(self, window: int, hidden: int = 256, depth: int = 3, delta: bool = True,
                 stats: Mapping[str, Any] | None = None, activation: str = "elu"):
        super().__init__(window, hidden, depth, delta, stats, activation)
        self.net = GroupedMLP(J, 2 * self.window, hidden, depth, 1, activation)

    def _core(self, qn: torch.Tensor, an: torch.Tensor) -> torch.Tensor:
        return self.net(_per_joint(qn, an)).squeeze(-1)   # [B, 16]


class FingerWiseDynamics(DynamicsModel):
    """One MLP per finger (G=4): the finger's history ``[W*2*4]`` -> its 4 next states."""

    name = "fingerwise"

    def __init__(self, window: int, hidden: int = 256, depth: int = 3, delta: bool = True,
                 stats: Mapping[str, Any] | None = None, activation: str = "elu"):
        super().__init__(window, hidden, depth, delta, stats, activation)
        n_fingers, per_finger = FINGER_JOINTS.shape
        self.n_fingers, self.per_finger = n_fingers, per_finger
        order = torch.as_tensor(FINGER_JOINTS.reshape(-1), dtype=torch.long)
        # finger-major joint order and its inverse (identity for the LEAP hardware order,
        # kept so a different grouping in constants needs no change here)
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("inverse", torch.argsort(order), persistent=False)
        self.net = GroupedMLP(n_fingers, 2 * self.window * per_finger, hidden, depth, per_finger, activation)

    def _core(self, qn: torch.Tensor, an: torch.Tensor) -> torch.Tensor:
        x = torch.stack((qn[..., self.order], an[..., self.order]), dim=-1)      # [B, W, 16, 2]
        B, W = x.shape[:2]
        x = x.reshape(B, W, self.n_fingers, self.per_finger * 2).transpose(1, 2)  # [B, F, W, 4*2]
        y = self.net(x.flatten(2))                                                 # [B, F, 4]
        return y.flatten(1)[..., self.inverse]                                     # [B, 16]


class WholeHandDynamics(DynamicsModel):
    """One MLP on the whole history ``[W*2*16]`` -> all 16 next states (G=1)."""

    name = "wholehand"

    def __init__(self, window: int, hidden: int = 256, depth: int = 3, delta: bool = True,
                 stats: Mapping[str, Any] | None = None, activation: str = "elu"):
        super().__init__(window, hidden, depth, delta, stats, activation)
        self.net = GroupedMLP(1, 2 * self.window * J, hidden, depth, J, activation)

    def _core(self, qn: torch.Tensor, an: torch.Tensor) -> torch.Tensor:
        x = torch.stack((qn, an), dim=-1).flatten(1)   # [B, W*16*2]
        return self.net(x.unsqueeze(1)).squeeze(1)     # [B, 16]


class SharedJointDynamics(DynamicsModel):
    """UAN-style: ONE MLP applied to every joint's own history ``[W*2]`` (+ one-hot id ``[16]``)."""

    name = "shared"

    def __init__(self, window: int, hidden: int = 256, depth: int = 3, delta: bool = True,
                 stats: Mapping[str, Any] | None = None, activation: str = "elu", joint_id: bool = False):
        super().__init__(window, hidden, depth, delta, stats, activation)
        self.joint_id = bool(joint_id)
        self.net = GroupedMLP(1, 2 * self.window + (J if self.joint_id else 0), hidden, depth, 1, activation)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "joint_id": self.joint_id}

    def _core(self, qn: torch.Tensor, an: torch.Tensor) -> torch.Tensor:
        x = _per_joint(qn, an)                                        # [B, 16, W*2]
        B = x.shape[0]
        if self.joint_id:
            eye = torch.eye(J, dtype=x.dtype, device=x.device).expand(B, J, J)
            x = torch.cat((x, eye), dim=-1)
        y = self.net(x.reshape(B * J, 1, -1))                         # joints as batch: same weights
        return y.reshape(B, J)


#: Dynamics families by config name.
DYNAMICS: dict[str, type[DynamicsModel]] = {
    "jointwise": JointWiseDynamics,
    "fingerwise": FingerWiseDynamics,
    "wholehand": WholeHandDynamics,
    "shared": SharedJointDynamics,
}


def build_dynamics(name: str, **kwargs: Any) -> DynamicsModel:
    """Instantiate ``DYNAMICS[name](**kwargs)``; an unknown name raises ``ValueError`` listing the choices."""
    if name not in DYNAMICS:
        raise ValueError(f"unknown dynamics model {name!r}; choose one of {sorted(DYNAMICS)}")
    return DYNAMICS[name](**kwargs)


def rollout(model: DynamicsModel, q_hist: torch.Tensor, a_hist: torch.Tensor,
            future_a: torch.Tensor) -> torch.Tensor:
    """Open-loop H-step prediction, feeding predictions back into the history.

    ``q_hist [B, W, 16]`` holds q_{t-W+1..t}; ``a_hist [B, W', 16]`` (W' >= W-1) holds the
    actions *before* step t, a_{..t-1}; ``future_a [B, H, 16]`` holds the actions to apply,
    a_{t..t+H-1}.  Returns q_{t+1..t+H} ``[B, H, 16]``: step k feeds the model
    q_{t+k-W+1..t+k} (measured, then predicted) with a_{t+k-W+1..t+k}.
    """
    W = model.window
    if q_hist.dim() != 3 or q_hist.shape[1] != W:
        raise ValueError(f"q_hist must be [B, {W}, {J}], got {tuple(q_hist.shape)}")
    if a_hist.dim() != 3 or a_hist.shape[1] < W - 1 or future_a.dim() != 3:
        raise ValueError(f"a_hist must be [B, >={W - 1}, {J}] and future_a [B, H, {J}], "
                         f"got {tuple(a_hist.shape)} and {tuple(future_a.shape)}")
    qs = q_hist
    acts = torch.cat((a_hist[:, a_hist.shape[1] - (W - 1):], future_a), dim=1)   # a_{t-W+1..t+H-1}
    preds = []
    for k in range(future_a.shape[1]):
        q_next = model(qs, acts[:, k:k + W])
        preds.append(q_next)
        qs = torch.cat((qs[:, 1:], q_next.unsqueeze(1)), dim=1)
    return torch.stack(preds, dim=1)


def per_joint_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per joint ``[16]`` (radians) over all leading dims of ``[..., 16]``."""
    if pred.shape != target.shape or pred.shape[-1] != J:
        raise ValueError(f"pred and target must share a [..., {J}] shape, "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")
    return (pred - target).abs().reshape(-1, J).mean(0)
