"""``dexndm rollout``: roll out PPO oracles and record their full-length trajectories (DexNDM App. C).

One checkpoint writes ``out`` directly.  Several checkpoints (one oracle per category)
write one part file each, ``<out stem>.parts/<k>_<category>.h5`` (each resumable on its
own: a file holds one checkpoint's rollouts), and the parts are then merged into
``out`` (rebuilt on every run; the parts are the durable record).
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dexndm.apps import hydra_app
from dexndm.rl.rollout import format_report, rollout_oracle


def _category(path: Path) -> str:
    from dexndm.rl.checkpoint import from_json, load_checkpoint

    return str(from_json(load_checkpoint(path)["config"])["env"].get("object_set", "unknown"))


def run(cfg: DictConfig | dict) -> dict:
    """Roll out every checkpoint of ``cfg.checkpoints``; returns {"reports": [...], "out": path}."""
    cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
    checkpoints = [Path(str(p)) for p in (cfg.checkpoints or [])]
    if not checkpoints:
        raise ValueError("rollout: give one or more oracle checkpoints, e.g. 'checkpoints=[run/checkpoints/last.pt]'")
    out = Path(str(cfg.out))
    if len(checkpoints) == 1:
        targets = [out]
    else:
        parts = out.with_name(out.stem + ".parts")
        targets = [parts / f"{k:02d}_{_category(p)}.h5" for k, p in enumerate(checkpoints)]
    reports = []
    for path, target in zip(checkpoints, targets):
        report = rollout_oracle(
            path, out_path=target, num_envs=int(cfg.num_envs), episodes=int(cfg.episodes),
            wrist=_opt(cfg.get("wrist")), axes=_opt(cfg.get("axes")), domain=_opt(cfg.get("domain")),
            seed=int(cfg.get("seed", 0)), grasp_dir=cfg.get("grasp_dir"), stochastic=bool(cfg.get("stochastic", False)),
            privileged_obs=bool(cfg.get("privileged_obs", False)), device=str(cfg.get("device", "cpu")))
        print(format_report(report))
        reports.append(report)
    if len(checkpoints) > 1:
        from dexndm.data.validate import merge

        tmp = out.with_name(f".{out.name}.{os.getpid()}.merging")
        tmp.unlink(missing_ok=True)
        count = merge(targets, tmp)
        os.replace(tmp, out)
        print(f"[rollout] merged {count} trajectories of {len(targets)} checkpoints into {out}")
    return {"reports": reports, "out": str(out)}


def _opt(value):
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


main = hydra_app("rollout", run)
