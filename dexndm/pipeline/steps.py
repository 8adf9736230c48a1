"""The pipeline's calls into collection and evaluation, with the pipeline's names and files.

``rollout_policy`` is ``task_aware`` collection (successful episodes only) run in the
source domain; ``evaluate_methods`` is ``dexndm.eval.rotation.evaluate`` on the three
methods of the report, written with ``dexndm.eval.tables`` into the stage folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dexndm.pipeline.report import METRICS


def rollout_policy(out: Path, *, generalist: str, domain: Any, task: dict, episodes: int, num_envs: int,
                   seed: int, env: dict | None = None) -> dict:
    """The generalist's successful episodes in ``domain`` written to ``out``; the collection summary."""
    from dexndm.collect.strategies import collect

    summary = collect("task_aware", out=out, episodes=int(episodes), num_envs=int(num_envs), domain=domain,
                      wrist=task["wrist"], episode_steps=int(task["episode_steps"]), seed=seed,
                      policy=f"generalist:{generalist}", object_set=task["object_set"], axes=task["axes"],
                      env=dict(env or {}), progress=False)
    if not summary.get("written") and not summary.get("existing"):
        raise RuntimeError(f"the generalist kept no successful episode in {domain!r} "
                           f"({summary.get('attempted')} attempted): nothing to replay or to train the residual on. "
                           "Check checkpoints.generalist, or run with from_scratch=true")
    return {**summary, "out": str(out)}


def evaluate_methods(stage_dir: Path, *, generalist: str, residuals: dict[str, str], domain: Any, task: dict,
                     seeds: list[int], episodes: int, num_envs: int, env: dict | None = None,
                     source_domain: Any = None, ceiling: float | None = None) -> dict:
    """Direct transfer, DexNDM and the whole-hand variant in ``domain``; per-seed metrics per method.
    With ``source_domain`` also ``source``: the base policy where it was trained, the reference for
    what the gap costs and what a residual could win back (``dexndm.pipeline.report.diagnose``).
    With ``ceiling`` (a bound, rad) also ``ideal``: the residual a perfect dynamics model would give
    (``dexndm.eval.ideal``; its source domain is ``source_domain``, nominal if None)."""
    from dexndm.eval.rotation import evaluate
    from dexndm.eval.tables import write_report

    policies: dict[str, Any] = {"direct": f"generalist:{generalist}"}
    policies.update({name: f"generalist:{generalist}+residual:{path}" for name, path in residuals.items()})
    if ceiling is not None:
        policies["ideal"] = {"kind": "generalist", "checkpoint": generalist, "ideal": float(ceiling),
                             "ideal_source": str(source_domain if source_domain is not None else "nominal")}
    runs = [(policies, domain, "eval")] + ([({"source": policies["direct"]}, source_domain, "eval_source")]
                                           if source_domain is not None else [])
    per_seed, files = {}, []
    for which, where, name in runs:
        report = evaluate(which, domains=[str(where)], object_sets=[task["object_set"]], axes=[task["axes"]],
                          wrists=[task["wrist"]], seeds=seeds, episodes=episodes, num_envs=num_envs,
                          env={**dict(env or {}), "episode_steps": int(task["episode_steps"])})
        files += [str(f) for f in write_report(report, stage_dir, name=name).values()]
        for row in report["results"]:               # one condition: one row per policy
            order = sorted(row["per_seed"], key=int)
            per_seed[row["policy"]] = [{m: row["per_seed"][s][m] for m in METRICS if m in row["per_seed"][s]}
                                       for s in order]
    return {"per_seed": per_seed, "generalist": generalist, "residuals": residuals, "eval_files": files}
