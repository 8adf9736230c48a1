"""Learning curves from a training run's ``metrics.csv`` (one row per iteration).

``dexndm curves RUN_DIR [--out FILE.png] [--keys k1,k2,...]`` plots the chosen columns
against frames, so a committed CSV can be turned into the figure of a report.  Several
runs (``dexndm curves A.csv B.csv ...``) are overlaid, one colour each, to compare a sweep.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

DEFAULT_KEYS = ("reward/mean", "episode/rot_r", "episode/ttf", "reward/goal", "reward/torque", "reward/pose")


def read_metrics(path: str | Path) -> dict[str, list[float]]:
    """Columns of a metrics.csv as float lists (empty cells become NaN)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass a run directory holding metrics.csv, or the file")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path} holds no rows yet")
    return {k: [float(r[k]) if r[k] not in ("", None) else float("nan") for r in rows] for k in rows[0]}


def plot_curves(metrics: dict[str, list[float]], keys=DEFAULT_KEYS, out: str | Path = "curves.png",
                title: str = "") -> Path:
    """One panel per key against frames (millions); returns the PNG path."""
    return plot_runs({"": metrics}, keys, out, title)


def plot_runs(runs: dict[str, dict[str, list[float]]], keys=DEFAULT_KEYS, out: str | Path = "curves.png",
              title: str = "") -> Path:
    """Like ``plot_curves`` for several runs (name -> metrics), overlaid with a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = [k for k in keys if any(k in m for m in runs.values())]
    if not keys:
        available = sorted({k for m in runs.values() for k in m})
        raise ValueError(f"none of the requested columns exist; available: {available}")
    single = len(runs) == 1
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for index, (name, metrics) in enumerate(runs.items()):
        frames = np.asarray(metrics["frames"]) / 1e6
        colour = f"C{index % 10}"
        for ax, key in zip(axes[0], keys):
            if key not in metrics:
                continue
            y = np.asarray(metrics[key])
            ok = np.isfinite(y)
            ax.plot(frames[ok], y[ok], lw=0.8, alpha=0.4, color=None if single else colour)
            if ok.sum() >= 10:  # a moving average over finished-episode rows
                k = max(ok.sum() // 30, 3)
                ax.plot(frames[ok][k - 1:], np.convolve(y[ok], np.ones(k) / k, mode="valid"), lw=1.6,
                        color=None if single else colour, label=name or None)
    for ax, key in zip(axes[0], keys):
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("frames (M)", fontsize=8)
        ax.tick_params(labelsize=7)
    if not single:
        axes[0][0].legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dexndm curves", description=__doc__)
    parser.add_argument("run", nargs="+", help="run directory (with metrics.csv) or the CSV file; several: overlaid")
    parser.add_argument("--out", default=None, help="PNG path (default: RUN/curves.png, for the first RUN)")
    parser.add_argument("--keys", default=",".join(DEFAULT_KEYS))
    parser.add_argument("--title", default="")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    paths = [Path(r) for r in args.run]
    out = args.out or ((paths[0] if paths[0].is_dir() else paths[0].parent) / "curves.png")
    runs = {_run_name(p): read_metrics(p) for p in paths}
    if len(runs) < len(paths):
        raise SystemExit("dexndm curves: two runs have the same name; pass distinct files or directories")
    path = plot_runs(runs, args.keys.split(","), out, args.title)
    print(f"[curves] wrote {path}")
    return 0


def _run_name(path: Path) -> str:
    """Legend label: the directory's name, or the CSV's stem without a ``_metrics`` suffix."""
    return path.name if path.is_dir() else path.stem.removesuffix("_metrics")
