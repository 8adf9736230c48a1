"""What runs on the hand each tick: the base policy's target chain plus the residual
correction (DexNDM Sec. 3.3, "deployed as base + residual").

    a_t     = clip(a_{t-1} + ACTION_SCALE * clip(pi_base(o_t), -1, 1), joint limits)
    command = clip(a_t + pi_res(q_t, a_t), joint limits)

The chain a_t (and the observation history, which records it) never includes the
residual: the residual only changes what the hand is sent, exactly as in residual
training, where the dynamics model sees a_j + pi_res(q_j, a_j) and pi_res sees a_j.
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
from dexndm.models.generalist import GeneralistPolicy, load_generalist
from dexndm.models.residual import ResidualNet, load_residual
from dexndm.sim.control import ACTION_SCALE


class DeployPolicy(nn.Module):
    """(obs ``[B, D]``, q ``[B, 16]``, previous target ``[B, 16]``) -> (target ``[B, 16]``,
    command ``[B, 16]``), radians, hardware joint order."""

    def __init__(self, base: GeneralistPolicy, residual: ResidualNet | None = None,
                 action_scale: float = ACTION_SCALE):
        super().__init__()
        self.base = base
        self.residual = residual if residual is not None else _NoResidual()
        self.has_residual = residual is not None
        self.action_scale = float(action_scale)
        self.register_buffer("lower", torch.as_tensor(hc.JOINT_LOWER, dtype=torch.float32))
        self.register_buffer("upper", torch.as_tensor(hc.JOINT_UPPER, dtype=torch.float32))

    def forward(self, obs: torch.Tensor, q: torch.Tensor, prev_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        action = torch.nan_to_num(self.base(obs), nan=0.0, posinf=0.0, neginf=0.0).clamp(-1.0, 1.0)
        target = torch.minimum(torch.maximum(prev_target + self.action_scale * action, self.lower), self.upper)
        offset = torch.nan_to_num(self.residual(q, target), nan=0.0, posinf=0.0, neginf=0.0)
        command = torch.minimum(torch.maximum(target + offset, self.lower), self.upper)
        return target, command

    @torch.no_grad()
    def offset(self, q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The residual alone, ``[B, 16]`` rad (zeros without one): the env's ``target_offset``."""
        return torch.nan_to_num(self.residual(q, target), nan=0.0, posinf=0.0, neginf=0.0)

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
        return cls(base, res, scale).eval(), {"generalist": base_meta, "residual": res_meta}


class _NoResidual(nn.Module):
    def forward(self, q: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(a)
