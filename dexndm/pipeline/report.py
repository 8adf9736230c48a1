"""The pipeline's report directory: ``report.json``, markdown tables in the paper's layout,
CSV, and a bar plot (DexNDM Sec. 5, Table 1: methods as rows, metrics as columns,
mean +- std over seeds).

``report.json`` = {"domain", "source_domain", "checkpoints": {name: sha256},
"methods": {method: {metric: {"mean", "std", "n"}}}, "per_seed": {method: [...]},
"gain": {metric: dexndm - direct, with the pooled std}, "paired_gain": {method: {metric: per-seed
differences to direct transfer}}, "diagnosis", "settings", "timings"}.

Every method is evaluated on the same seeds, and a seed draws the same objects, grasps and loads for each
method, so ``paired_gain`` (method minus direct transfer seed by seed) removes the between-seed spread
that ``gain`` compares against; ``every_seed`` says the sign held on every seed.

``diagnosis`` answers the issue's "where no gain appears, why?" with what the run measured:
``gap`` (per metric: the base policy in the source domain minus direct transfer, i.e. what the
reality gap costs and the most a residual could win back, and the fraction each residual method
recovered; with ``evaluate.ceiling`` also the simulator-computed ideal residual's, ``dexndm.eval.ideal``:
what a perfect dynamics model would recover), ``residual`` (per dynamics variant: the tracking error its frozen model predicts on the
sim rollouts without and with the residual, over the residual's training horizon, their ratio, and
the mean |a_res|) and ``dynamics``
(each fine-tuned model's best eval loss, and, for one-step residuals, ``gap_over_error``: the tracking error it predicts on the
sim rollouts over its own error on held-out target data, both normalised MSE of the next-state delta;
near 1 the model cannot tell the sim's motion from its own error, so a residual trained through it
chases model error: the dynamics need more or better target data before a residual can help) and
``base`` (``command_offset_rad``: how far the base policy's commanded targets sit from its joints in
its sim rollouts, mean |a_t - q_t|; a target far from a blocked joint sets a force, not a position,
and a model of the next joint positions barely sees a change of it).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from dexndm.pipeline.cache import write_json

#: Metrics reported, in table order, with their column headers.
METRICS: dict[str, str] = {
    "rot_rad": "radians rotated",
    "ttf": "TTF",
    "rot_r": "RotR",
    "rotp": "RotP",
    "survival_angle": "survival angle (rad)",
}
METHOD_NAMES: dict[str, str] = {
    "direct": "Direct transfer (base policy)",
    "dexndm": "DexNDM (joint-wise dynamics + residual)",
    "wholehand": "Whole-hand dynamics + residual",
    "source": "Base policy in the source domain (reference)",
    "ideal": "Ideal residual (simulator-computed ceiling)",
}
RESIDUAL_METHODS = {"dexndm": "jointwise", "wholehand": "wholehand"}   # report method -> dynamics variant
#: Methods whose share of the gap the diagnosis reports: the residuals, and the ideal one (``evaluate.ceiling``).
WON_BACK_METHODS = (*RESIDUAL_METHODS, "ideal")
#: Below this gap_over_error the model barely sees the gap (MSEs add: a gap as large as the model's
#: error doubles it); the report then says so.
GAP_VISIBLE = 1.5
GAP_WITHIN_ERROR = (": the gap is within what the model gets wrong, so its residual chases model error "
                    "(collect more target data or train the dynamics longer)")


def _value(row: dict, metric: str) -> float | None:
    """A seed's metric as a float, or None where it is missing or not finite."""
    v = row.get(metric)
    return float(v) if v is not None and math.isfinite(float(v)) else None


def summarize_seeds(per_seed: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and (population) std over seeds of each metric."""
    out = {}
    for m in METRICS:
        vals = [v for v in (_value(s, m) for s in per_seed) if v is not None]
        if vals:
            out[m] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "n": len(vals)}
    return out


def gains(methods: dict[str, dict], base: str = "direct", ours: str = "dexndm") -> dict[str, dict[str, float]]:
    """ours - base per metric, with the larger of the two spreads for comparison."""
    out = {}
    for m in METRICS:
        if m in methods.get(base, {}) and m in methods.get(ours, {}):
            a, b = methods[base][m], methods[ours][m]
            out[m] = {"difference": b["mean"] - a["mean"], "spread": max(a["std"], b["std"]),
                      "exceeds_spread": abs(b["mean"] - a["mean"]) > max(a["std"], b["std"])}
    return out


def paired_gains(per_seed: dict[str, list[dict]], base: str = "direct") -> dict[str, dict[str, dict]]:
    """Each other method minus ``base``, seed by seed (rows aligned by seed, as ``evaluate`` writes them):
    {method: {metric: {"per_seed", "mean", "std", "every_seed"}}}; ``every_seed``: same sign on every
    seed and nonzero. Methods with a different number of seeds are left out."""
    out: dict[str, dict[str, dict]] = {}
    rows_base = per_seed.get(base, [])
    for name, rows in per_seed.items():
        if name == base or name == "source" or len(rows) != len(rows_base) or not rows:
            continue
        out[name] = {}
        for m in METRICS:
            pairs = [(_value(r, m), _value(b, m)) for r, b in zip(rows, rows_base)]
            if any(x is None or y is None for x, y in pairs):
                continue
            diff = np.array([x - y for x, y in pairs])
            mean = float(diff.mean())
            out[name][m] = {"per_seed": diff.tolist(), "mean": mean, "std": float(diff.std()),
                            "every_seed": bool(mean != 0 and np.all(np.sign(diff) == np.sign(mean)))}
    return out


def paired_lines(paired: dict[str, dict[str, dict]]) -> list[str]:
    """Markdown lines for ``paired_gains``."""
    lines = []
    for name, metrics in paired.items():
        for m, g in metrics.items():
            seeds = " / ".join(f"{d:+.3f}" for d in g["per_seed"])
            verdict = "every seed" if g["every_seed"] else "not on every seed"
            lines.append(f"- {METHOD_NAMES.get(name, name)}, {METRICS[m]}: {g['mean']:+.3f} +- {g['std']:.3f} "
                         f"({seeds}; {verdict})")
    return lines


def command_offset(path: str | Path) -> float | None:
    """Mean |a_t - q_t| (rad) over every step and joint of a trajectory file (None if it has no steps)."""
    from dexndm.data.reader import TrajectoryFile

    total, n = 0.0, 0
    with TrajectoryFile(path) as f:
        for _, traj in f.iter(fields=["q", "target"]):
            gap = np.abs(np.asarray(traj["target"]) - np.asarray(traj["q"])[:-1])
            total, n = total + float(gap.sum()), n + gap.size
    return total / n if n else None


def diagnose(methods: dict[str, dict], stages: dict[str, dict]) -> dict:
    """What the run says about a missing gain: the gap's cost, the residuals' predicted effect,
    the dynamics error (see the module docstring); parts whose measurements are absent are left out."""
    out: dict = {}
    if "source" in methods and "direct" in methods:
        gap = {}
        for m in ("rot_rad", "ttf"):
            if m not in methods["source"] or m not in methods["direct"]:
                continue
            cost = methods["source"][m]["mean"] - methods["direct"][m]["mean"]
            spread = max(methods["source"][m]["std"], methods["direct"][m]["std"])
            # a cost within the seeds' spread leaves nothing measurable to win back: no fraction then
            row = {"cost": cost, "spread": spread, "cost_exceeds_spread": abs(cost) > spread}
            for name in WON_BACK_METHODS:
                if m in methods.get(name, {}):
                    won = methods[name][m]["mean"] - methods["direct"][m]["mean"]
                    row[f"{name}_won"] = won
                    row[f"{name}_recovered"] = won / cost if row["cost_exceeds_spread"] else None
            gap[m] = row
        out["gap"] = gap
    residual, dynamics = {}, {}
    for variant in RESIDUAL_METHODS.values():
        val = stages.get(f"residual_{variant}", {}).get("val_metrics", {})
        horizon = int(stages.get(f"residual_{variant}", {}).get("horizon", 1))
        if "val/track" in val and "val/track_zero" in val:
            residual[variant] = {"track_zero": val["val/track_zero"], "track": val["val/track"],
                                 "track_ratio": val["val/track"] / max(val["val/track_zero"], 1e-12),
                                 "res_abs": val.get("val/res_abs"), "horizon": horizon}
        score = stages.get(f"finetune_{variant}", {}).get("best_model_score")
        if score is not None:
            dynamics[variant] = {"finetuned_eval_loss": score}
            if variant in residual and horizon == 1:      # a rollout's error is not comparable to one step's
                dynamics[variant]["gap_over_error"] = residual[variant]["track_zero"] / max(score, 1e-12)
    if residual:
        out["residual"] = residual
    if dynamics:
        out["dynamics"] = dynamics
    offset = stages.get("sim_rollouts", {}).get("command_offset_rad")
    if offset is not None:
        out["base"] = {"command_offset_rad": offset}
    return out


def diagnosis_lines(diag: dict) -> list[str]:
    """The diagnosis as markdown bullet lines."""
    lines = []
    for m, g in diag.get("gap", {}).items():
        won = ", ".join(f"{METHOD_NAMES[n].split(' (')[0]} {g[f'{n}_won']:+.3f}"
                        + (f" ({g[f'{n}_recovered']:+.0%} of it)" if g.get(f"{n}_recovered") is not None else "")
                        for n in WON_BACK_METHODS if f"{n}_won" in g)
        verdict = "" if g["cost_exceeds_spread"] else ", within the seeds' spread: nothing measurable to win back"
        lines.append(f"- {METRICS[m]}: the gap costs direct transfer {g['cost']:+.3f} against the source domain "
                     f"(spread {g['spread']:.3f}{verdict}); won back: {won or 'n/a'}")
    for v, r in diag.get("residual", {}).items():
        over = f" over {r['horizon']} steps" if r.get("horizon", 1) > 1 else ""
        lines.append(f"- {v} residual: predicted tracking error{over} {r['track_zero']:.4g} without, {r['track']:.4g} with "
                     f"it (x{r['track_ratio']:.2f}), mean |a_res| {r['res_abs']:.3g}")
    if "base" in diag:
        lines.append(f"- base policy: its commanded targets sit {diag['base']['command_offset_rad']:.3f} rad from its "
                     "joints on average in its sim rollouts (a target pressed past a blocked joint sets a force, which "
                     "a model of the next joint positions barely sees)")
    for v, d in diag.get("dynamics", {}).items():
        line = f"- {v} dynamics: fine-tuned eval loss {d['finetuned_eval_loss']:.4g}"
        if "gap_over_error" in d:
            ratio = d["gap_over_error"]
            line += (f"; the sim rollouts' motion is {ratio:.2f}x that error away from its predictions"
                     + (GAP_WITHIN_ERROR if ratio < GAP_VISIBLE else ""))
        lines.append(line)
    return lines


def markdown_table(methods: dict[str, dict], domain: str) -> str:
    cols = [m for m in METRICS if any(m in v for v in methods.values())]
    lines = [f"Target domain: `{domain}` (mean +- std over seeds)", "",
             "| method | " + " | ".join(METRICS[m] for m in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for name, metrics in methods.items():
        cells = [f"{metrics[m]['mean']:.3f} +- {metrics[m]['std']:.3f}" if m in metrics else "-" for m in cols]
        lines.append(f"| {METHOD_NAMES.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, *, domain: str, source_domain: str, per_seed: dict[str, list[dict]],
                 checkpoints: dict[str, str], settings: dict, timings: dict[str, float],
                 stages: dict[str, dict] | None = None, extras: dict | None = None) -> dict:
    """Write report.json, results.md, results.csv and results.png; returns the report.
    ``stages``: the stages' outputs, for the diagnosis."""
    out_dir.mkdir(parents=True, exist_ok=True)
    methods = {name: summarize_seeds(rows) for name, rows in per_seed.items()}
    diag = diagnose(methods, stages or {})
    report = {"domain": domain, "source_domain": source_domain, "checkpoints": checkpoints,
              "methods": methods, "per_seed": per_seed, "gain": gains(methods),
              "paired_gain": paired_gains(per_seed), "diagnosis": diag,
              "settings": settings, "timings": timings, **(extras or {})}
    write_json(out_dir / "report.json", report)
    md = ["# DexNDM pipeline report", "", markdown_table(methods, domain), "",
          "DexNDM minus direct transfer (difference vs the larger std of the two):", ""]
    for m, g in report["gain"].items():
        md.append(f"- {METRICS[m]}: {g['difference']:+.3f} (spread {g['spread']:.3f}"
                  f"{', exceeds it' if g['exceeds_spread'] else ', within it'})")
    if report["paired_gain"]:
        md += ["", "Minus direct transfer, seed by seed (same objects, grasps and loads per seed):", ""]
        md += paired_lines(report["paired_gain"])
    if diag:
        md += ["", f"Diagnosis (source domain `{source_domain}` as the reference):", ""] + diagnosis_lines(diag)
    md += ["", "Checkpoints (sha256):", ""] + [f"- {k}: `{v}`" for k, v in checkpoints.items()]
    (out_dir / "results.md").write_text("\n".join(md) + "\n")
    with open(out_dir / "results.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "metric", "mean", "std", "n"])
        for name, metrics in methods.items():
            for m, v in metrics.items():
                w.writerow([name, m, v["mean"], v["std"], v["n"]])
    _plot(out_dir / "results.png", methods, domain)
    return report


def _plot(path: Path, methods: dict[str, dict], domain: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in ("rot_rad", "ttf") if any(m in v for v in methods.values())]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.5 * len(shown), 3.5), squeeze=False)
    names = list(methods)
    for ax, m in zip(axes[0], shown):
        means = [methods[n].get(m, {}).get("mean", np.nan) for n in names]
        stds = [methods[n].get(m, {}).get("std", 0.0) for n in names]
        ax.bar(range(len(names)), means, yerr=stds, capsize=4, color=["0.6", "tab:blue", "tab:orange", "0.85"][:len(names)])
        ax.set_xticks(range(len(names)), names)
        ax.set_title(f"{METRICS[m]} ({domain})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
