"""Model-zoo training from inside the pipeline: compose ``dexndm train``'s Hydra config for an
experiment, override it, and run it in-process (``dexndm.apps.train.run``).

The pipeline trains exactly what ``dexndm train experiment=...`` would, so a stage can be
reproduced by hand with the overrides it records.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from dexndm.conf import register


def compose_train(experiment: str, out_dir: Path, overrides: list[str]) -> DictConfig:
    """The composed ``train`` config of ``experiment`` with ``overrides`` and ``out_dir`` set."""
    register()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_module(config_module="dexndm.conf", version_base=None):
        return compose(config_name="train", overrides=[f"experiment={experiment}", f"out_dir={quote(out_dir)}",
                                                       "logger=none", *overrides])


def quote(value) -> str:
    """A value as a Hydra override string: quoted, so paths with '=', spaces or commas pass intact."""
    text = str(value)
    if "'" in text:
        raise ValueError(f"cannot pass {text!r} as a Hydra override (it contains a single quote); rename it")
    return f"'{text}'"


def train_experiment(experiment: str, out_dir: Path, overrides: list[str]) -> dict:
    """Train ``experiment`` into ``out_dir``; returns ``dexndm.apps.train.run``'s result plus the
    overrides and the checkpoint to use (best by eval loss, else the last)."""
    from dexndm.apps.train import run

    cfg = compose_train(experiment, out_dir, overrides)
    split = cfg.get("data", {}).get("split_path")
    if split and Path(split).resolve().is_relative_to(Path(out_dir).resolve()):
        Path(split).unlink(missing_ok=True)     # a stage reruns because its inputs changed: split them afresh
    result = run(cfg)
    ckpt = result.get("best_model_path") or result.get("last_model_path")
    if not ckpt or not Path(ckpt).is_file():
        raise RuntimeError(f"training {experiment} in {out_dir} produced no checkpoint; see {out_dir}")
    return {**result, "checkpoint": str(ckpt), "experiment": experiment, "overrides": overrides,
            "command": " ".join(["dexndm train", f"experiment={experiment}", *overrides])}
