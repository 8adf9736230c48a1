"""Generalist policy: behaviour cloning of the oracle on the deployable observation (DexNDM
Sec. 3.2; Appendix A.1, "Generalist Policy Architecture").

``ResidualMLP`` is the A.1 backbone: an input linear layer to ``hidden``, ``blocks``
residual blocks ``y = ReLU(NN1(x) + NN3(ReLU(NN2(x))))`` (NN1..3 linear hidden->hidden),
and an output linear layer.  ``GeneralistPolicy`` wraps it with the observation
normalisation (buffers, so a checkpoint carries them); its output is the relative action
in [-1, 1] (``act`` clips), scaled by ``ACTION_SCALE`` (1/24 rad) by the controller.

``GeneralistModule`` trains it with MSE to the oracle's action on
``TrajectoryDataModule(kind="bc")`` batches {obs [B, 327], action [B, 16]}; every ``.ckpt``
carries ``dexndm_meta`` (deploy layout, joint order, action scale, control rate) and
``load_generalist`` rebuilds the plain policy with ``torch.load(weights_only=True)``,
refusing a checkpoint whose layout differs from the one this code builds.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dexndm.hand.constants import JOINT_NAMES, NUM_JOINTS
from dexndm.models.checkpoints import read_checkpoint
from dexndm.sim.control import ACTION_SCALE, CONTROL_RATE_HZ
from dexndm.sim.observations import ObsLayout, deploy_layout

CKPT_FORMAT = "dexndm.generalist.v1"
_PREFIX = "net."
_STD_FLOOR = 1e-6


class _Block(nn.Module):
    """y = ReLU(NN1(x) + NN3(ReLU(NN2(x))))."""

    def __init__(self, hidden: int):
        super().__init__()
        self.nn1, self.nn2, self.nn3 = (nn.Linear(hidden, hidden) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.nn1(x) + self.nn3(F.relu(self.nn2(x))))


class ResidualMLP(nn.Module):
    """Input linear -> ``blocks`` x ``_Block`` -> output linear (2 + 3*blocks Linear layers)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 1024, blocks: int = 5):
        super().__init__()
        if min(in_dim, out_dim, hidden) < 1 or blocks < 0:
            raise ValueError(f"need positive dims and blocks >= 0; got {in_dim}, {out_dim}, {hidden}, {blocks}")
        self.inp = nn.Linear(in_dim, hidden)
        self.blocks = nn.Sequential(*(_Block(hidden) for _ in range(blocks)))
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.inp(x)))


class GeneralistPolicy(nn.Module):
    """Normalised deploy observation ``[B, obs_dim]`` -> relative action ``[B, 16]``."""

    def __init__(self, obs_dim: int | None = None, hidden: int = 1024, blocks: int = 5, act_dim: int = NUM_JOINTS):
        super().__init__()
        obs_dim = deploy_layout().dim if obs_dim is None else int(obs_dim)
        self.obs_dim, self.hidden, self.blocks, self.act_dim = obs_dim, int(hidden), int(blocks), int(act_dim)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.mlp = ResidualMLP(obs_dim, act_dim, hidden, blocks)

    def config(self) -> dict[str, Any]:
        return {"obs_dim": self.obs_dim, "hidden": self.hidden, "blocks": self.blocks, "act_dim": self.act_dim}

    @torch.no_grad()
    def set_stats(self, mean: Any, std: Any) -> None:
        mean = torch.as_tensor(np.asarray(mean), dtype=torch.float32).expand(self.obs_dim).clone()
        std = torch.as_tensor(np.asarray(std), dtype=torch.float32).expand(self.obs_dim).clone()
        self.obs_mean.copy_(mean)
        self.obs_std.copy_(std.clamp_min(_STD_FLOOR))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(f"generalist expects observations [..., {self.obs_dim}], got {tuple(obs.shape)}")
        return self.mlp((obs - self.obs_mean) / self.obs_std)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Relative action in [-1, 1] (times ``ACTION_SCALE`` rad per step at the controller)."""
        return bound_action(self(obs))


def bound_action(raw: torch.Tensor) -> torch.Tensor:
    """The network's output as the action the controller takes: non-finite values become 0 (hold the
    target), the rest are clipped to [-1, 1].  The one place for that rule (``act`` and ``DeployPolicy``)."""
    return torch.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0).clamp(-1.0, 1.0)


def _plain_obs_stats(stats: Mapping[str, Any] | None) -> dict[str, list[float]] | None:
    if stats is None:
        return None
    if "obs" in stats:
        stats = stats["obs"]
    return {"mean": np.asarray(stats["mean"], dtype=np.float64).reshape(-1).tolist(),
            "std": np.asarray(stats["std"], dtype=np.float64).reshape(-1).tolist()}


class GeneralistModule(L.LightningModule):
    """BC of the oracle: MSE(policy(obs), action).  Stats: ``stats`` ({mean, std} or a
    datamodule-style {"obs": {mean, std}}), else ``trainer.datamodule.stats["obs"]`` at setup."""

    def __init__(self, hidden: int = 1024, blocks: int = 5, lr: float = 3e-4, weight_decay: float = 0.0,
                 stats: dict | None = None, history: int = 10):
        super().__init__()
        stats = _plain_obs_stats(stats)
        self.save_hyperparameters()
        self.layout = deploy_layout(history)
        self.net = GeneralistPolicy(self.layout.dim, hidden, blocks)
        self._stats_ready = stats is not None
        if stats is not None:
            self.net.set_stats(stats["mean"], stats["std"])

    def setup(self, stage: str) -> None:
        if self._stats_ready:
            return
        dm = getattr(self.trainer, "datamodule", None)
        st = getattr(dm, "stats", None) or {}
        if "obs" not in st:
            raise ValueError("GeneralistModule has no observation stats: pass stats= or train with a "
                             "datamodule whose .stats has 'obs' (TrajectoryDataModule(kind='bc'))")
        if list(st.get("joint_order", JOINT_NAMES)) != list(JOINT_NAMES):
            raise ValueError(f"datamodule joint order {st.get('joint_order')} differs from {list(JOINT_NAMES)}")
        self.net.set_stats(st["obs"]["mean"], st["obs"]["std"])
        self._stats_ready = True

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._stats_ready = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dexndm_meta"] = {
            "format": CKPT_FORMAT, "layout": self.layout.to_dict(), "joint_order": list(JOINT_NAMES),
            "action_scale": ACTION_SCALE, "control_rate_hz": CONTROL_RATE_HZ, "config": self.net.config(),
        }

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net.act(obs)

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return F.mse_loss(self.net(batch["obs"]), batch["action"])

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["action"]))
        return loss

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.log("val/loss", self.loss(batch), on_epoch=True, batch_size=len(batch["action"]),
                 sync_dist=True, add_dataloader_idx=False)


def load_generalist(path: str | os.PathLike, history: int = 10) -> tuple[GeneralistPolicy, dict[str, Any]]:
    """(plain ``GeneralistPolicy`` in eval mode with its stats, meta) from a GeneralistModule ``.ckpt``.

    Raises ``ValueError`` if the checkpoint's observation layout or joint order differs from
    ``deploy_layout(history)`` of this code.
    """
    state, meta = read_checkpoint(path, CKPT_FORMAT, "generalist", "GeneralistModule", _PREFIX)
    deploy_layout(history).check_compatible(ObsLayout.from_dict(meta["layout"]))
    net = GeneralistPolicy(**meta["config"])
    net.load_state_dict(state)
    return net.eval(), meta
