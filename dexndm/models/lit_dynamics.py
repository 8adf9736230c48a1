"""LightningModule for neural-dynamics training: sim pre-training, real fine-tuning (DexNDM
Sec. 3.3; Appendix C, "Dynamics Model Training").

``DynamicsModule`` wraps one of the ``build_dynamics`` nets and trains it with MSE in the
net's normalised target space (``predict_normalized`` vs ``normalized_target``) on
``TrajectoryDataModule(kind="dynamics")`` batches {q_hist [B, W, 16], a_hist [B, W, 16],
q_next [B, 16]}.  Appendix C pre-trains on sim data, fine-tunes the same model on real
data and keeps the checkpoint with the lowest eval loss: ``pretrained=`` starts from a
previous checkpoint (weights and normalisation stats), ``best_checkpoint_callback`` keeps
the best by ``val/loss``.

Checkpoints are data (STYLE.md): every ``.ckpt`` carries ``dexndm_meta`` (joint order,
variant, window, net config, control rate) next to the state dict, whose buffers hold the
normalisation stats; ``load_dynamics`` rebuilds the plain ``nn.Module`` with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from dexndm.hand.constants import JOINT_NAMES, NUM_JOINTS
from dexndm.models.checkpoints import read_checkpoint
from dexndm.sim.control import CONTROL_RATE_HZ
from dexndm.models.dynamics import STAT_KEYS, DynamicsModel, build_dynamics, per_joint_error

#: ``dexndm_meta["format"]`` of dynamics checkpoints.
CKPT_FORMAT = "dexndm.dynamics.v1"
_PREFIX = "net."                      # state-dict prefix of the wrapped net inside the LightningModule


def _plain_stats(stats: Mapping[str, Any] | None) -> dict[str, list[float]] | None:
    """Stats as plain float lists (hparams and checkpoints must load with ``weights_only=True``)."""
    if stats is None:
        return None
    return {k: np.broadcast_to(np.asarray(torch.as_tensor(stats[k]).detach().cpu(), dtype=np.float64),
                               (NUM_JOINTS,)).tolist() for k in stats if k in STAT_KEYS}


def datamodule_stats(datamodule: Any, max_batches: int = 64) -> dict[str, list[float]]:
    """Net stats (``STAT_KEYS``) from a ``TrajectoryDataModule`` after its ``setup()``.

    q/a mean and std are the datamodule's train-split ``q_hist``/``a_hist`` stats.  The
    datamodule has none for dq = q_next - q_t, so dq mean/std come from up to
    ``max_batches`` train batches (a subsample suffices for a scale; exact for small sets).
    """
    st = getattr(datamodule, "stats", None)
    if not st or "q_hist" not in st or "a_hist" not in st:
        raise ValueError("the datamodule has no dynamics stats (q_hist/a_hist); use "
                         "TrajectoryDataModule(kind='dynamics') and call setup() first, or pass stats=")
    if list(st.get("joint_order", JOINT_NAMES)) != list(JOINT_NAMES):
        raise ValueError(f"datamodule joint order {st.get('joint_order')} differs from {list(JOINT_NAMES)}")
    n, s, ss = 0, torch.zeros(NUM_JOINTS, dtype=torch.float64), torch.zeros(NUM_JOINTS, dtype=torch.float64)
    for i, batch in enumerate(datamodule.train_dataloader()):
        if i >= max_batches:
            break
        dq = (batch["q_next"] - batch["q_hist"][:, -1]).double()
        n, s, ss = n + len(dq), s + dq.sum(0), ss + (dq * dq).sum(0)
    if n == 0:
        raise ValueError("the datamodule's train split yielded no batches; cannot compute dq stats")
    mean = s / n
    std = (ss / n - mean ** 2).clamp_min(0.0).sqrt()
    return {"q_mean": st["q_hist"]["mean"], "q_std": st["q_hist"]["std"],
            "a_mean": st["a_hist"]["mean"], "a_std": st["a_hist"]["std"],
            "dq_mean": mean.tolist(), "dq_std": std.tolist()}


def _load_ckpt(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(net state dict without prefix, meta) of a DynamicsModule checkpoint, loaded as data."""
    return read_checkpoint(path, CKPT_FORMAT, "dynamics", "DynamicsModule", _PREFIX)


def load_dynamics(path: str | os.PathLike) -> tuple[DynamicsModel, dict[str, Any]]:
    """Rebuild the plain dynamics net (weights + stats buffers, eval mode) and its meta from a ``.ckpt``."""
    state, meta = _load_ckpt(path)
    cfg = dict(meta["config"])
    net = build_dynamics(cfg.pop("name"), **cfg)
    net.load_state_dict(state)
    return net.eval(), meta


class DynamicsModule(L.LightningModule):
    """Train a ``build_dynamics(variant, ...)`` net; ``pretrained``: a DynamicsModule ``.ckpt`` to fine-tune.

    Stats: ``stats`` if given, else the pretrained checkpoint's, else ``datamodule_stats``
    of the trainer's datamodule at ``setup()``.  Logs ``train/loss``; per val loader
    ``{name}/loss`` (normalised MSE) and ``{name}/joint_err`` (+ ``{name}/joint_err_{j}``),
    the one-step mean absolute error in radians, with name "val" then the eval sets.
    """

    def __init__(self, variant: str = "jointwise", window: int = 10, hidden: int = 256, depth: int = 3,
                 delta: bool = True, lr: float = 1e-3, weight_decay: float = 0.0,
                 stats: dict | None = None, pretrained: str | None = None, stats_batches: int = 64):
        super().__init__()
        stats = _plain_stats(stats)
        pretrained = None if pretrained is None else str(pretrained)
        self.save_hyperparameters()
        self.net = build_dynamics(variant, window=window, hidden=hidden, depth=depth, delta=delta, stats=stats)
        self._stats_ready = stats is not None
        if pretrained is not None:
            self._load_pretrained(pretrained)

    def _load_pretrained(self, path: str) -> None:
        state, meta = _load_ckpt(path)
        mine = {"variant": self.hparams.variant, "window": self.hparams.window, "delta": self.hparams.delta}
        theirs = {k: meta.get(k) for k in mine}
        if mine != theirs:
            raise ValueError(f"cannot fine-tune from {path!r}: it is {theirs}, this model {mine}; "
                             f"build DynamicsModule with the pretrained variant/window/delta")
        try:
            self.net.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"cannot fine-tune from {path!r}: net config {meta.get('config')} does not match "
                             f"{self.net.config()} ({err})") from None
        if self.hparams.stats is not None:        # explicit stats override the pretrained ones
            self.net.set_stats(self.hparams.stats)
        self._stats_ready = True

    # -- lifecycle ---------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self._stats_ready:
            return
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            raise ValueError("DynamicsModule has no normalisation stats: pass stats= or pretrained=, "
                             "or train with a TrajectoryDataModule (trainer.fit(model, datamodule=dm))")
        if getattr(dm, "window", self.hparams.window) != self.hparams.window:
            raise ValueError(f"datamodule window {dm.window} != model window {self.hparams.window}")
        self.net.set_stats(datamodule_stats(dm, self.hparams.stats_batches))
        self._stats_ready = True

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._stats_ready = True                  # the state dict restores the stats buffers

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dexndm_meta"] = {
            "joint_order": list(JOINT_NAMES), "variant": self.hparams.variant, "window": int(self.hparams.window),
            "delta": bool(self.hparams.delta), "control_rate_hz": CONTROL_RATE_HZ, "format": CKPT_FORMAT,
            "config": dict(self.net.config()),
        }

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    # -- steps -------------------------------------------------------------------------------
    def forward(self, q_hist: torch.Tensor, a_hist: torch.Tensor) -> torch.Tensor:
        """q_{t+1} ``[B, 16]`` (radians) from ``q_hist, a_hist [B, W, 16]``."""
        return self.net(q_hist, a_hist)

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """MSE between the normalised prediction and target (delta or absolute, per the net)."""
        pred = self.net.predict_normalized(batch["q_hist"], batch["a_hist"])
        return F.mse_loss(pred, self.net.normalized_target(batch["q_hist"][:, -1], batch["q_next"]))

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["q_next"]))
        return loss

    def _val_name(self, dataloader_idx: int) -> str:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        names = getattr(dm, "val_names", None) or ["val"]
        return names[dataloader_idx] if dataloader_idx < len(names) else f"val{dataloader_idx}"

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        name, B = self._val_name(dataloader_idx), len(batch["q_next"])
        loss = self.loss(batch)
        err = per_joint_error(self.net(batch["q_hist"], batch["a_hist"]), batch["q_next"])   # [16] rad
        # batch-size-weighted epoch means of per-batch means are exact dataset means (and DDP-synced)
        metrics = {f"{name}/loss": loss, f"{name}/joint_err": err.mean(),
                   **{f"{name}/joint_err_{j}": err[j] for j in range(NUM_JOINTS)}}
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=B, sync_dist=True,
                      add_dataloader_idx=False, prog_bar=False)


def best_checkpoint_callback(dirpath: str | os.PathLike, monitor: str = "val/loss") -> L.pytorch.callbacks.ModelCheckpoint:
    """Keep the checkpoint with the lowest eval loss (Appendix C) plus ``last.ckpt``."""
    return L.pytorch.callbacks.ModelCheckpoint(dirpath=str(dirpath), monitor=monitor, mode="min", save_top_k=1,
                                               save_last=True, filename="best-e{epoch:03d}-s{step}",
                                               auto_insert_metric_name=False)
