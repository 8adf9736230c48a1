"""``dexndm eval``: evaluate rotation policies with the paper's metrics and tables (DexNDM Sec. 4.1,
Appendix C; Tables 1, 4, 5).

    dexndm eval protocol=table4 domains=[latency] seeds=[0,1,2] episodes=32
        'policies={direct:"generalist:g.ckpt",dexndm:"generalist:g.ckpt+residual:r.ckpt"}'

(one command line: the policy mapping names the table rows; a list of specs works too).

Writes ``eval.md`` (the paper's tables), ``eval.csv`` and ``eval.json`` to ``out_dir`` (the
Hydra run directory by default).  ``run(cfg)`` is the plain function behind it.
"""

from __future__ import annotations

import sys
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dexndm.apps import hydra_app
from dexndm.conf import to_plain
from dexndm.eval.rotation import evaluate
from dexndm.eval.tables import write_report


class _Progress:
    """A rich bar on a TTY (or when forced), else one line per finished (policy, condition, seed)."""

    def __init__(self, mode: Any):
        self.bar = sys.stdout.isatty() if mode == "auto" else bool(mode)
        self.quiet = mode is False or mode == "false"
        self._p = self._task = None

    def __call__(self, done: int, total: int, message: str) -> None:
        if self.quiet:
            return
        if not self.bar:
            print(f"[eval] {done}/{total} {message}", flush=True)
            return
        if self._p is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._p = Progress(TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                               TextColumn("{task.fields[info]}"))
            self._task = self._p.add_task("eval", total=total, info="")
            self._p.start()
        self._p.update(self._task, completed=done, info=message)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


#: EnvConfig fields the conditions set (eval refuses an env.* override of them).
_CONDITION_FIELDS = ("domain", "object_set", "wrist", "axes", "goal_mode")
_RUN_FIELDS = ("num_envs", "seed")


def env_overrides(env: Any) -> dict:
    """The ``env`` node as ``EnvConfig`` overrides for every condition: condition fields must be at
    their defaults (use domains=/object_sets=/axes=/wrists=), run fields are dropped."""
    from dexndm.sim.config import EnvConfig

    data, default = to_plain(env), EnvConfig().to_dict()
    changed = [k for k in _CONDITION_FIELDS if k in data and data[k] != default[k]]
    if changed:
        raise ValueError(f"env.{changed} are set per condition: use domains=, object_sets=, axes=, wrists= "
                         "(axes=[goal] for goal-oriented mode)")
    return {k: v for k, v in data.items() if k not in _CONDITION_FIELDS + _RUN_FIELDS}


def run(cfg: DictConfig | dict) -> dict:
    """Evaluate as ``cfg`` says (see ``conf/eval.yaml``); write the report; return it with ``paths``."""
    cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
    policies = _plain(cfg.get("policies")) or ["zero"]
    progress = _Progress(cfg.get("progress", "auto"))
    try:
        report = evaluate(policies, domains=_plain(cfg.get("domains")) or ["nominal"],
                          object_sets=_plain(cfg.get("object_sets")), axes=_plain(cfg.get("axes")),
                          wrists=_plain(cfg.get("wrists")), protocol=cfg.get("protocol"),
                          seeds=_plain(cfg.get("seeds", [0, 1, 2])), episodes=int(cfg.get("episodes", 16)),
                          num_envs=int(cfg.get("num_envs", 16)), env=env_overrides(cfg.get("env")),
                          progress=progress, keep_episodes=bool(cfg.get("keep_episodes", False)))
    finally:
        progress.close()
    paths = write_report(report, str(cfg.out_dir), _plain(cfg.get("tables")))
    report["paths"] = {k: str(v) for k, v in paths.items()}
    return report


def _run_and_print(cfg: DictConfig) -> None:
    try:
        report = run(cfg)
    except (FileNotFoundError, ValueError) as exc:
        print(f"dexndm eval: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(open(report["paths"]["md"]).read())
    print(f"[eval] report: {report['paths']['md']} (+ .csv, .json)")


_hydra_entry = hydra_app("eval", _run_and_print)


def main() -> int | None:
    """``dexndm eval key=value ...`` evaluates policies; ``dexndm eval dynamics --ckpt ... --eval ...``
    benchmarks dynamics checkpoints (the same tool as ``dexndm eval-dynamics``)."""
    import sys

    if sys.argv[1:2] == ["dynamics"]:
        from dexndm.eval import dynamics

        sys.argv = ["dexndm eval dynamics", *sys.argv[2:]]
        return dynamics.main(sys.argv[1:])
    return _hydra_entry()


if __name__ == "__main__":
    main()
