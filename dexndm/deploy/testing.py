"""Tiny generalist and residual checkpoints for tests, benchmarks and trying the deploy stack.

They are real checkpoints of the real modules (``GeneralistModule`` / ``ResidualModule``,
``dexndm_meta`` included, readable with ``weights_only=True``), randomly initialised:
nothing is downloaded, and they are not meant to rotate anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from dexndm.hand.constants import NUM_JOINTS
from dexndm.models.checkpoints import write_checkpoint
from dexndm.models.generalist import GeneralistModule
from dexndm.models.residual import ResidualModule
from dexndm.sim.observations import deploy_layout


#: The released generalist (checkpoints/generalist/CARD.md), present in a source checkout (not in a wheel).
RELEASED_GENERALIST = Path(__file__).resolve().parents[2] / "checkpoints" / "generalist" / "generalist.ckpt"


class _HoldDynamics(nn.Module):
    """q_{t+1} = q_t: a stand-in frozen dynamics, only so a ResidualModule can be built."""

    def forward(self, q_hist: torch.Tensor, a_hist: torch.Tensor) -> torch.Tensor:
        return q_hist[:, -1]


def _save(module, path: Path) -> Path:
    return Path(write_checkpoint(module, path))


def write_tiny_checkpoints(directory: str | os.PathLike, *, hidden: int = 32, blocks: int = 1, res_hidden: int = 16,
                           res_depth: int = 1,
                           max_residual: float = 0.05, seed: int = 0) -> tuple[Path, Path]:
    """(generalist.ckpt, residual.ckpt) in ``directory``; the residual's output layer is non-zero so
    the residual visibly changes the command (a fresh ResidualNet starts at exactly zero)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    dim = deploy_layout().dim
    gen = GeneralistModule(hidden=hidden, blocks=blocks, stats={"mean": [0.5] * dim, "std": [0.7] * dim})
    res = ResidualModule(dynamics=_HoldDynamics(), hidden=res_hidden, depth=res_depth, max_residual=max_residual)
    with torch.no_grad():
        nn.init.normal_(res.res.mlp[-1].weight, std=0.3)
        res.res.set_stats({"q_mean": [0.5] * NUM_JOINTS, "q_std": [0.6] * NUM_JOINTS,
                           "a_mean": [0.5] * NUM_JOINTS, "a_std": [0.6] * NUM_JOINTS})
    return _save(gen, d / "generalist.ckpt"), _save(res, d / "residual.ckpt")
