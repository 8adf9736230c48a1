"""``dexndm pipeline``: the sim-to-real loop end to end on a target domain (DexNDM Sec. 3.3-4).

``run(cfg)`` builds the stages (``dexndm.pipeline.stages``), runs them with caching
(``dexndm.pipeline.cache``) and writes the report directory (``dexndm.pipeline.report``):
``report.json``, ``results.md``, ``results.csv``, ``results.png``, the video, and each
stage's outputs under ``<out_dir>/<stage>/``.
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dexndm.apps import hydra_app

#: Measured on a 2-core CPU machine with the default sizes (see README): shown up front.
DEFAULT_BUDGET_MIN = 20


def _plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)


def run(cfg: DictConfig | dict, console: Console | None = None) -> dict:
    """Run (or resume) the pipeline described by ``cfg``; returns the report dict."""
    from dexndm.files import file_sha256
    from dexndm.pipeline.cache import StageRunner
    from dexndm.pipeline.report import write_report
    from dexndm.pipeline.stages import build_stages
    from dexndm.sim.domain import load_domain

    cfg = _plain(cfg)
    console = console or Console()
    load_domain(cfg["domain"])              # a bad domain fails here, before any stage runs
    out_dir = Path(cfg["out_dir"])
    stages = build_stages(cfg)
    names = [s.name for s in stages]
    wanted = names if cfg.get("stages") in (None, "all", ["all"]) else list(cfg["stages"])
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ValueError(f"pipeline: unknown stages {unknown}; stages are {names}")
    force = set(cfg.get("force") or [])
    if not force <= set(names) | {"all"}:
        raise ValueError(f"pipeline: force names unknown stages {sorted(force - set(names) - {'all'})}; stages are {names}")
    budget = "" if cfg.get("from_scratch") else f", about {DEFAULT_BUDGET_MIN} min or less with the default sizes on 2 CPU cores"
    console.print(f"[bold]dexndm pipeline[/bold] -> {out_dir}: target domain {cfg['domain']!r}, "
                  f"{len(wanted)} stages ({', '.join(wanted)}){budget}")
    runner = StageRunner(out_dir, force=force, log=console.print)
    t0 = time.perf_counter()
    for k, stage in enumerate(stages):
        if stage.name not in wanted:
            continue
        console.rule(f"stage {k + 1}/{len(stages)}: {stage.name}  ({time.perf_counter() - t0:.0f} s elapsed)")
        runner.run(stage)
    if "evaluate" not in runner.results:
        console.print("[pipeline] evaluate did not run in this call: no report written")
        return {"stages": runner.results}
    ev = runner.results["evaluate"]
    checkpoints = {"generalist": ev["generalist"], **{f"residual_{m}": p for m, p in ev["residuals"].items()}}
    report = write_report(out_dir, domain=str(cfg["domain"]), source_domain=str(cfg["source_domain"]),
                          per_seed=ev["per_seed"], checkpoints={k: file_sha256(v) for k, v in checkpoints.items()},
                          settings=cfg, timings=runner.timings, stages=runner.results,
                          extras={"video": runner.results.get("video", {}).get("video"),
                                  "checkpoint_paths": checkpoints})
    console.print((out_dir / "results.md").read_text())
    console.print(f"[pipeline] report in {out_dir} ({time.perf_counter() - t0:.0f} s)")
    return report


main = hydra_app("pipeline", run)


if __name__ == "__main__":
    main()
