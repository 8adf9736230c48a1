"""``dexndm train experiment=...``: fit a model of the zoo with Lightning, configured by Hydra.

``run(cfg)`` is the plain function tests call: it instantiates ``cfg.data`` (a
LightningDataModule), ``cfg.model`` (a LightningModule), the callbacks, the logger and
``cfg.trainer``, fits, and returns where the best checkpoint went.  Multirun sweeps
(``-m``) give every job its own run directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dexndm.apps import hydra_app


def run(cfg: DictConfig) -> dict:
    """Train as configured; returns the best checkpoint path and its monitored score."""
    L.seed_everything(int(cfg.seed), workers=True)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    best = next((c for c in callbacks if isinstance(c, L.pytorch.callbacks.ModelCheckpoint)), None)
    result = {
        "best_model_path": best.best_model_path if best else None,
        "best_model_score": float(best.best_model_score) if best and best.best_model_score is not None else None,
        "last_model_path": best.last_model_path if best else None,
        "epochs": int(trainer.current_epoch),
        # the last validation's metrics (e.g. a residual's val/track against val/track_zero)
        "val_metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")},
    }
    (out_dir / "result.json").write_text(json.dumps(result, indent=2))
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return result


def _run_and_print(cfg: DictConfig) -> float | None:
    result = run(cfg)
    print(f"[train] best {result['best_model_path']} (score {result['best_model_score']})")
    return result["best_model_score"]  # what a sweeper would minimise


main = hydra_app("train", _run_and_print)
