"""``dexndm export``: write a deploy bundle from a generalist (+ residual) checkpoint
(DexNDM Sec. 3.3, "deployed as base + residual"; format in :mod:`dexndm.deploy.export`).
``precision=int8`` quantises the Linear layers (dynamic int8) for faster batch-1 inference on CPU."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from dexndm.apps import hydra_app
from dexndm.conf import to_plain


def run(cfg: DictConfig | dict) -> dict:
    """Export the bundle; returns {"out": path, "manifest": {...}}."""
    from dexndm.deploy.export import MAX_INT8_DEVIATION, export_bundle, load_bundle

    cfg = to_plain(OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg)
    if not cfg.get("generalist"):
        raise ValueError("export: give the generalist checkpoint, e.g. 'generalist=runs/gen/checkpoints/last.ckpt' "
                         "(and optionally 'residual=runs/res/checkpoints/last.ckpt')")
    limit = cfg.get("max_int8_deviation", MAX_INT8_DEVIATION)
    out = export_bundle(cfg["generalist"], cfg["out"], cfg.get("residual"), domain=cfg.get("domain"),
                        hand=str(cfg.get("hand", "leap")), history=int(cfg.get("history", 10)),
                        overwrite=bool(cfg.get("overwrite", False)), precision=str(cfg.get("precision", "fp32")),
                        max_int8_deviation=None if limit is None else float(limit))
    bundle = load_bundle(out)          # what a robot will do: prove it loads
    m = bundle.manifest
    print(f"[export] bundle {out}: policy sha256 {bundle.sha256[:12]}..., residual: {m['policy']['has_residual']}, "
          f"history {bundle.history}, {m['control_rate_hz']:g} Hz, precision {bundle.precision}")
    q = m["policy"].get("quantization")
    if q:
        dev = q["max_abs_dev_vs_fp32_rad"]
        print(f"[export] int8 vs fp32 over {q['deviation_samples']} inputs: max |target| {dev['target']:.2e} rad, "
              f"max |command| {dev['command']:.2e} rad")
    return {"out": str(out), "manifest": m}


main = hydra_app("export", run)


if __name__ == "__main__":
    main()
