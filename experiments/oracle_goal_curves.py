"""Issue 3's learning goal, one figure: the training curve of each goal oracle against its lineage's frames.

    PYTHONPATH=. python experiments/oracle_goal_curves.py [--out experiments/oracle_goal_curves.png]

A goal oracle warm-started from another run (palm down from palm up) is drawn as its lineage: the parent's
rows up to the checkpoint it branched from, then its own, so the x axis counts what the issue's "within 50M
environment steps" counts.  Dashed lines: the goal (RotR 150, TTF 0.8) and the 50M budget.  The curves are
training episodes (stochastic policy, episodes ending in each iteration); the goal is judged on the
deterministic evaluations in ``oracle_status.md``, which run higher.  Also prints, per goal, the lineage's
frames so far and the training means over its last 2M frames.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dexndm.eval.curves import plot_runs, read_metrics, stitch, window_means
from dexndm.rl.checkpoint import load_checkpoint

HERE = Path(__file__).resolve().parent
CHECKPOINTS = HERE.parent / "checkpoints" / "oracle"
BUDGET = 50e6
GOALS = {"episode/rot_r": 150.0, "episode/ttf": 0.8}
#: goal -> the lineage's curves, first run first: (metrics.csv under experiments/, the checkpoint of the run that
#: branched off it, whose recorded lineage says at how many frames, or None for the last run)
LINEAGES = {
    "palm up, cylinders": [("oracle_cylinders_palm_up_z_tip/metrics.csv", None)],
    "palm down, cylinders": [("oracle_cylinders_palm_up_z_tip/metrics.csv", "cylinders_palm_down_z_from_tip27"),
                             ("oracle_cylinders_palm_down_z/from_tip27/metrics.csv", None)],
    "palm up, cuboids": [("oracle_cuboids_palm_up_z/hard_draws/metrics.csv", "cuboids_palm_up_z_drift_from25"),
                         ("oracle_cuboids_palm_up_z/drift_from25/metrics.csv", None)],
    "palm down, cuboids": [("oracle_cuboids_palm_up_z/hard_draws/metrics.csv", "cuboids_palm_up_z_drift_from25"),
                           ("oracle_cuboids_palm_up_z/drift_from25/metrics.csv", "cuboids_palm_down_z_drift"),
                           ("oracle_cuboids_palm_down_z/drift/metrics.csv", None)],
}


def branch_frames(child: str | None) -> float | None:
    """The frames a released branch was warm-started at, from its checkpoint's lineage."""
    if child is None:
        return None
    return float(load_checkpoint(CHECKPOINTS / child / "last.pt")["lineage"]["frames_before"])


def lineage_curves(root: Path = HERE) -> dict[str, dict[str, list[float]]]:
    curves = {}
    for goal, segments in LINEAGES.items():
        parts, before = [], 0.0          # a branch point counts the lineage; each curve counts its own run
        for csv, child in segments:
            cut = branch_frames(child)
            if cut is not None:
                cut, before = cut - before, cut
            parts.append((read_metrics(root / csv), cut))
        curves[goal] = stitch(parts)
    return curves


def trailing_means(metrics: dict[str, list[float]], keys, frames: float) -> dict[str, float]:
    """Episode-weighted means of ``keys`` over the last ``frames`` of a curve."""
    end = metrics["frames"][-1]
    recent = {k: [v for f, v in zip(metrics["frames"], column) if f > end - frames] for k, column in metrics.items()}
    return window_means(recent, keys, end)[0][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE / "oracle_goal_curves.png"))
    args = parser.parse_args()
    curves = lineage_curves()
    keys = list(GOALS)
    plot_runs(curves, keys, args.out, "issue 3 goal oracles: training episodes vs lineage frames",
              goals=GOALS, budget_frames=BUDGET, raw=False)
    print("| goal | lineage frames | training RotR, TTF over the last 2M frames |\n|---|---|---|")
    for goal, metrics in curves.items():
        means = trailing_means(metrics, keys, 2e6)
        print(f"| {goal} | {metrics['frames'][-1] / 1e6:.1f}M | {means['episode/rot_r']:.1f}, "
              f"{means['episode/ttf']:.3f} |")
    print(f"[oracle_goal_curves] wrote {args.out}")


if __name__ == "__main__":
    main()
