"""Learning curves from a training run's ``metrics.csv`` (one row per iteration).

``dexndm curves RUN_DIR [--out FILE.png] [--keys k1,k2,...]`` plots the chosen columns
against frames, so a committed CSV can be turned into the figure of a report.  Several
runs (``dexndm curves A.csv B.csv ...``) are overlaid, one colour each, to compare a sweep.
``--table MFRAMES`` also prints the mean of each key over windows of that many million
frames, one row per window and run, so runs can be compared at equal frames in a report.
``--append-to FILE.csv`` first appends the run's rows past FILE's last iteration, up to the run's last
checkpoint, to FILE (a committed curve carried on by a resumed run), then plots FILE.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from dexndm.files import atomic_path

DEFAULT_KEYS = ("reward/mean", "episode/rot_r", "episode/ttf", "reward/goal", "reward/torque", "reward/pose")


def read_metrics(path: str | Path) -> dict[str, list[float]]:
    """Columns of a metrics.csv (or a run directory holding one) as float lists (empty cells become NaN)."""
    _, rows = _read_rows(path)
    return {k: [float(r[k]) if r[k] not in ("", None) else float("nan") for r in rows] for k in rows[0]}


def append_rows(source: str | Path, target: str | Path) -> int:
    """Append the rows of ``source`` whose iteration is past ``target``'s last one to ``target``.

    For a committed ``metrics.csv`` carried on by a run resumed from its checkpoint: the resumed run's
    own CSV starts or overlaps wherever that run started.  Both files must have the same columns and
    the appended rows must go on from ``target``'s last iteration without a gap (a ``target`` .csv that
    does not exist yet starts the curve at iteration 1), else nothing is
    written.  When ``source`` is a run directory with ``checkpoints/last.pt``, rows past that
    checkpoint's iteration are left out: a killed run wrote them, and its resume re-runs those
    iterations.  ``target`` is replaced atomically (temp file, then rename).  Returns the rows appended.
    """
    upto = _checkpoint_iteration(source)
    header_s, rows_s = _read_rows(source)
    if Path(target).suffix == ".csv" and not Path(target).exists():   # a new curve: the run's rows from iteration 1
        header_t, rows_t = header_s, []
    else:
        header_t, rows_t = _read_rows(target)
    source, target = _csv_path(source), _csv_path(target)
    if "iteration" not in header_t:
        raise ValueError(f"{target} has no iteration column: only a run's metrics.csv can be carried on")
    if header_s != header_t:
        raise ValueError(f"{source} and {target} have different columns; append only a run's own curve "
                         f"(missing in {source}: {sorted(set(header_t) - set(header_s))}, "
                         f"extra: {sorted(set(header_s) - set(header_t))})")
    last = int(rows_t[-1]["iteration"]) if rows_t else 0
    new = [r for r in rows_s if last < int(r["iteration"]) <= upto]
    if not new:
        return 0
    for expected, row in enumerate(new, start=last + 1):
        if int(row["iteration"]) != expected:
            raise ValueError(f"{source} does not go on from {target}'s last iteration {last} without a gap "
                             f"(next iteration after {expected - 1} is {row['iteration']}); resume the run "
                             f"from the checkpoint that curve ends at")
    with atomic_path(target) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header_t)  # csv's \r\n, as the run's logger writes
        writer.writeheader()
        writer.writerows(rows_t + new)
    return len(new)


def _checkpoint_iteration(run: str | Path) -> float:
    """The iteration of a run directory's last checkpoint (``inf`` for a bare CSV or a run without one)."""
    ckpt = Path(run) / "checkpoints" / "last.pt"
    if not ckpt.is_file():
        return float("inf")
    from dexndm.rl.checkpoint import load_checkpoint

    return int(load_checkpoint(ckpt)["counters"]["iteration"])


def _csv_path(path: str | Path) -> Path:
    path = Path(path)
    return path / "metrics.csv" if path.is_dir() else path


def _read_rows(path: str | Path) -> tuple[list[str], list[dict]]:
    """(column names, rows as str dicts) of a metrics.csv or of the run directory holding one."""
    path = _csv_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass a run directory holding metrics.csv, or the file")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    if not rows:
        raise ValueError(f"{path} holds no rows yet")
    return list(reader.fieldnames), rows


def window_means(metrics: dict[str, list[float]], keys, window_frames: float) -> list[tuple[float, float, dict]]:
    """Mean of each key over consecutive frame windows ``(start, start + window_frames]`` (a row's
    ``frames`` is the count at the end of its iteration, so it belongs to the window it closes).

    ``episode/*`` columns are averaged over episodes (weighted by ``episode/count`` when the
    CSV has it: a row's value is the mean of the episodes that ended in that iteration);
    other columns over rows.  Empty cells are skipped; a window without a value gives NaN.
    Returns ``[(start, end, {key: mean})]`` for every window up to the last row's frames.
    """
    import numpy as np

    if window_frames <= 0:
        raise ValueError(f"window must be > 0 frames, got {window_frames}")
    frames = np.asarray(metrics["frames"], dtype=float)
    counts = np.asarray(metrics.get("episode/count", np.ones_like(frames)), dtype=float)
    out = []
    for start in np.arange(0.0, frames.max(), window_frames):
        rows = (frames > start) & (frames <= start + window_frames)
        means = {}
        for key in keys:
            y = np.asarray(metrics.get(key, np.full_like(frames, np.nan)), dtype=float)
            w = np.where(np.isfinite(counts), counts, 0.0) if key.startswith("episode/") else np.ones_like(y)
            ok = rows & np.isfinite(y) & (w > 0)
            means[key] = float(np.average(y[ok], weights=w[ok])) if ok.any() else float("nan")
        out.append((float(start), float(start + window_frames), means))
    return out


def stitch(segments: list[tuple[dict[str, list[float]], float | None]]) -> dict[str, list[float]]:
    """The curve of a lineage: a run warm-started (``init_from``) from another run's checkpoint.

    ``segments`` are ``(metrics, branch_frames)`` from the first run to the last: each run's rows up to
    the frames where the next one branched off it (``None`` for the last run: all its rows), the later
    runs' frames and iterations shifted to follow on.  Frames then count the lineage, as a budget
    such as "within 50M frames" does.  Columns missing from a run are NaN in its rows.
    """
    if not segments or any(cut is None for _, cut in segments[:-1]):
        raise ValueError("every run but the last needs the frames its successor branched at")
    keys = list(dict.fromkeys(k for metrics, _ in segments for k in metrics))
    out: dict[str, list[float]] = {k: [] for k in keys}
    frames_before = iterations_before = 0.0
    for metrics, cut in segments:
        rows = [i for i, f in enumerate(metrics["frames"]) if cut is None or f <= cut]
        if cut is not None and (not rows or metrics["frames"][rows[-1]] != cut):
            raise ValueError(f"no row ends at {cut:.0f} frames: branch at a checkpoint's frame count")
        for k in keys:
            column = metrics.get(k, [float("nan")] * len(metrics["frames"]))
            shift = frames_before if k == "frames" else iterations_before if k == "iteration" else 0.0
            out[k].extend(column[i] + shift for i in rows)
        frames_before = out["frames"][-1]
        iterations_before = out["iteration"][-1] if "iteration" in out and out["iteration"] else 0.0
    return out


def format_table(runs: dict[str, dict[str, list[float]]], keys, window_frames: float) -> str:
    """Markdown table of ``window_means`` for every run: one row per (window, run)."""
    lines = ["| frames (M) | run | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    tables = {name: window_means(m, keys, window_frames) for name, m in runs.items()}
    for index in range(max(len(t) for t in tables.values())):
        for name, table in tables.items():
            if index < len(table):
                start, end, means = table[index]
                cells = " | ".join(f"{means[k]:.3g}" for k in keys)
                lines.append(f"| {start / 1e6:g}-{end / 1e6:g} | {name} | {cells} |")
    return "\n".join(lines)


def plot_curves(metrics: dict[str, list[float]], keys=DEFAULT_KEYS, out: str | Path = "curves.png",
                title: str = "") -> Path:
    """One panel per key against frames (millions); returns the PNG path."""
    return plot_runs({"": metrics}, keys, out, title)


def plot_runs(runs: dict[str, dict[str, list[float]]], keys=DEFAULT_KEYS, out: str | Path = "curves.png",
              title: str = "", goals: dict[str, float] | None = None, budget_frames: float | None = None,
              raw: bool = True) -> Path:
    """Like ``plot_curves`` for several runs (name -> metrics), overlaid with a legend; ``goals``
    (key -> value) and ``budget_frames`` draw dashed lines at a goal and at a frame budget;
    ``raw=False`` draws only the moving averages (episode-weighted for ``episode/*``)."""
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
            # episode/* rows are means of the episodes that ended in them: weigh them by that count
            w = np.asarray(metrics.get("episode/count", np.ones_like(y)), dtype=float) \
                if key.startswith("episode/") else np.ones_like(y)
            ok = np.isfinite(y) & np.isfinite(w) & (w > 0)
            if raw:
                ax.plot(frames[ok], y[ok], lw=0.8, alpha=0.4, color=None if single else colour)
            if ok.sum() >= 10:  # a moving average over finished-episode rows
                k = np.ones(max(ok.sum() // 30, 3))
                smooth = np.convolve(y[ok] * w[ok], k, mode="valid") / np.convolve(w[ok], k, mode="valid")
                ax.plot(frames[ok][len(k) - 1:], smooth, lw=1.6, color=None if single else colour, label=name or None)
    for ax, key in zip(axes[0], keys):
        if goals and key in goals:
            ax.axhline(goals[key], color="k", ls="--", lw=0.8)
        if budget_frames is not None:
            ax.axvline(budget_frames / 1e6, color="k", ls=":", lw=0.8)
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
    parser.add_argument("--out", default=None, help="PNG path (default: RUN/curves.png, for the first RUN; with "
                                                    "--table and no --out, no plot: a table leaves no file behind)")
    parser.add_argument("--keys", default=",".join(DEFAULT_KEYS))
    parser.add_argument("--title", default="")
    parser.add_argument("--table", type=float, default=None, metavar="MFRAMES",
                        help="print the keys' means over windows of this many million frames")
    parser.add_argument("--append-to", default=None, metavar="FILE.csv",
                        help="append the RUN's rows past FILE's last iteration to FILE, then plot FILE")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    paths = [Path(r) for r in args.run]
    if args.append_to is not None:
        if len(paths) != 1:
            raise SystemExit("dexndm curves --append-to takes one RUN (the resumed run's directory or CSV)")
        print(f"[curves] appended {append_rows(paths[0], args.append_to)} rows to {args.append_to}")
        paths = [Path(args.append_to)]
    runs = {_run_name(p): read_metrics(p) for p in paths}
    if len(runs) < len(paths):
        raise SystemExit("dexndm curves: two runs have the same name; pass distinct files or directories")
    if args.out is not None or args.table is None:
        out = args.out or ((paths[0] if paths[0].is_dir() else paths[0].parent) / "curves.png")
        print(f"[curves] wrote {plot_runs(runs, args.keys.split(','), out, args.title)}")
    if args.table is not None:
        print(format_table(runs, [k for k in args.keys.split(",") if any(k in m for m in runs.values())],
                           args.table * 1e6))
    return 0


def _run_name(path: Path) -> str:
    """Legend label: the directory's name, or the CSV's stem without a ``_metrics`` suffix."""
    return path.name if path.is_dir() else path.stem.removesuffix("_metrics")
