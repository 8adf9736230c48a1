"""What runs on the hand each tick: the base policy's target chain plus the residual
correction (DexNDM Sec. 3.3, "deployed as base + residual").

    a_t     = clip(a_{t-1} + ACTION_SCALE * clip(pi_base(o_t), -1, 1), joint limits)
    command = clip(a_t + pi_res(q_t, a_t[, the steps before]), joint limits)

The chain a_t (and the observation history, which records it) never includes the
residual: the residual only changes what the hand is sent, exactly as in residual
training, where the dynamics model sees a_j + pi_res(q_j, a_j) and pi_res sees a_j.
A residual with ``history > 1`` reads the steps before from the observation's (q_k, a_{k-1})
pairs: step j's (q_j, a_j) is q of pair j and a of pair j + 1.
Simulation applies the same split through ``target_offset`` (``dexndm.sim.control``).

``DeployPolicy`` is a plain ``nn.Module`` (TorchScript-able) over ``[B, ...]`` tensors;
``from_checkpoints`` builds it from a generalist and an optional residual checkpoint.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from dexndm.hand import constants as hc
from dexndm.models.generalist import GeneralistPolicy, bound_action, load_generalist
from dexndm.models.residual import ResidualNet, load_residual
from dexndm.sim.control import ACTION_SCALE
from dexndm.sim.observations import ObsLayout, deploy_layout


class DeployPolicy(nn.Module):
    """(obs ``[B, D]``, q ``[B, 16]``, previous target ``[B, 16]``) -> (target ``[B, 16]``,
    command ``[B, 16]``), radians, hardware joint order."""

    def __init__(self, base: GeneralistPolicy, residual: ResidualNet | None = None,
                 action_scale: float = ACTION_SCALE, layout: ObsLayout | None = None):
        super().__init__()
        self.base = base
        self.residual = residual if residual is not None else _NoResidual()
        self.has_residual = residual is not None
        self.action_scale = float(action_scale)
        self.res_history = residual.history if residual is not None else 1
        proprio = (layout or deploy_layout()).slice("proprio_history")   # the base's observation layout
        self.num_joints = hc.NUM_JOINTS
        self.proprio_start, self.proprio_steps = int(proprio.start), (proprio.stop - proprio.start) // (2 * hc.NUM_JOINTS)
        if self.res_history > self.proprio_steps:
            raise ValueError(f"the residual reads {self.res_history} steps, the observation holds {self.proprio_steps}")
        self.register_buffer("lower", torch.as_tensor(hc.JOINT_LOWER, dtype=torch.float32))
        self.register_buffer("upper", torch.as_tensor(hc.JOINT_UPPER, dtype=torch.float32))

    def forward(self, obs: torch.Tensor, q: torch.Tensor, prev_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        action = bound_action(self.base(obs))
        target = torch.minimum(torch.maximum(prev_target + self.action_scale * action, self.lower), self.upper)
        command = torch.minimum(torch.maximum(target + self.offset(obs, q, target), self.lower), self.upper)
        return target, command

    def offset(self, obs: torch.Tensor, q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The residual alone, ``[B, 16]`` rad (zeros without one): the env's ``target_offset``."""
        return torch.nan_to_num(self.residual(q, target, None, self.past(obs)), nan=0.0, posinf=0.0, neginf=0.0)

    def past(self, obs: torch.Tensor) -> torch.Tensor | None:
        """(q_j, a_j) of the ``res_history - 1`` steps before now ``[B, k - 1, 2, 16]``, oldest first, or None."""
        k = self.res_history
        if k == 1:
            return None
        T, J = self.proprio_steps, self.num_joints
        hist = obs[:, self.proprio_start:self.proprio_start + T * 2 * J].reshape(obs.shape[0], T, 2, J)
        return torch.stack([hist[:, T - k:T - 1, 0], hist[:, T - k + 1:T, 1]], dim=2)

    @classmethod
    def from_checkpoints(cls, generalist: str | os.PathLike, residual: str | os.PathLike | None = None,
                         ) -> tuple["DeployPolicy", dict[str, Any]]:
        """(policy in eval mode, {"generalist": meta, "residual": meta or None})."""
        base, base_meta = load_generalist(generalist)
        res, res_meta = (None, None) if residual is None else load_residual(residual)
        if res is not None and res.obs_dim:
            raise ValueError(f"residual {residual!r} needs an extra observation (obs_dim={res.obs_dim}); "
                             "DeployPolicy feeds it (q, a) only: train the residual with model.obs_dim=0")
        scale = float(base_meta.get("action_scale", ACTION_SCALE))
        layout = ObsLayout.from_dict(base_meta["layout"])
        return cls(base, res, scale, layout).eval(), {"generalist": base_meta, "residual": res_meta}


class _NoResidual(nn.Module):
    def forward(self, q: torch.Tensor, a: torch.Tensor, obs: torch.Tensor | None = None,
                past: torch.Tensor | None = None) -> torch.Tensor:
        return torch.zeros_like(a)
