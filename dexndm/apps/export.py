"""``dexndm export``: write a deploy bundle from a generalist (+ residual) checkpoint
(DexNDM Sec. 3.3, "deployed as base + residual"; format in :mod:`dexndm.deploy.export`)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from dexndm.conf import register, to_plain


def run(cfg: DictConfig | dict) -> dict:
    """Export the bundle; returns {"out": path, "manifest": {...}}."""
    from dexndm.deploy.export import export_bundle, load_bundle

    cfg = to_plain(OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg)
    if not cfg.get("generalist"):
        raise ValueError("export: give the generalist checkpoint, e.g. 'generalist=runs/gen/checkpoints/last.ckpt' "
                         "(and optionally 'residual=runs/res/checkpoints/last.ckpt')")
    out = export_bundle(cfg["generalist"], cfg["out"], cfg.get("residual"), domain=cfg.get("domain"),
                        hand=str(cfg.get("hand", "leap")), history=int(cfg.get("history", 10)),
                        overwrite=bool(cfg.get("overwrite", False)))
    bundle = load_bundle(out)          # what a robot will do: prove it loads
    m = bundle.manifest
    print(f"[export] bundle {out}: policy sha256 {bundle.sha256[:12]}..., residual: {m['policy']['has_residual']}, "
          f"history {bundle.history}, {m['control_rate_hz']:g} Hz")
    return {"out": str(out), "manifest": m}


@hydra.main(version_base=None, config_path="../conf", config_name="export")
def _hydra_main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    register()
    _hydra_main()


if __name__ == "__main__":
    main()
