"""Learning curves from a training run's ``metrics.csv`` (one row per iteration).

``dexndm curves RUN_DIR [--out FILE.png] [--keys k1,k2,...]`` plots the chosen columns
against frames, so a committed CSV can be turned into the figure of a report.
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = [k for k in keys if k in metrics]
    if not keys:
        raise ValueError(f"none of the requested columns exist; available: {sorted(metrics)}")
    frames = np.asarray(metrics["frames"]) / 1e6
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        y = np.asarray(metrics[key])
        ok = np.isfinite(y)
        ax.plot(frames[ok], y[ok], lw=0.8, alpha=0.4)
        if ok.sum() >= 10:  # a moving average over finished-episode rows
            k = max(ok.sum() // 30, 3)
            ax.plot(frames[ok][k - 1:], np.convolve(y[ok], np.ones(k) / k, mode="valid"), lw=1.6)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("frames (M)", fontsize=8)
        ax.tick_params(labelsize=7)
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
    parser.add_argument("run", help="run directory (with metrics.csv) or the CSV file")
    parser.add_argument("--out", default=None, help="PNG path (default: RUN/curves.png)")
    parser.add_argument("--keys", default=",".join(DEFAULT_KEYS))
    parser.add_argument("--title", default="")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    run = Path(args.run)
    out = args.out or ((run if run.is_dir() else run.parent) / "curves.png")
    path = plot_curves(read_metrics(run), args.keys.split(","), out, args.title)
    print(f"[curves] wrote {path}")
    return 0
