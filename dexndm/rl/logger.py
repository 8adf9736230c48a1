"""Training logs of the oracle PPO (DexNDM Sec. 3.1): TensorBoard, ``metrics.csv``, a progress bar.

Every iteration logs one row of scalars, keyed ``group/name`` (``reward/<term>``,
``episode/<metric>``, ``loss/...``, ``policy/...``, ``perf/...``, ``schedule/...``).
TensorBoard gets them against the frame count; ``metrics.csv`` gets the same row (a
fixed header, empty cells where nothing was measured, e.g. no episode ended), so
curves can be committed and plotted without TensorBoard.  On resume both are cut back
to the checkpoint: the CSV drops later rows, TensorBoard purges later steps.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from dexndm.files import atomic_path
from dexndm.sim.metrics import EPISODE_METRICS
from dexndm.sim.reward import TERMS

#: Columns of metrics.csv, in order.
COLUMNS: tuple[str, ...] = (
    "iteration", "frames", "time_s",
    "reward/mean", *(f"reward/{t}" for t in TERMS),
    "episode/count", *(f"episode/{m}" for m in EPISODE_METRICS),
    "loss/objective", "loss/critic", "loss/bounds", "loss/entropy",
    "policy/kl", "policy/kl_approx", "policy/entropy", "policy/log_std", "policy/clip_fraction",
    "policy/explained_variance", "policy/value_clip_fraction",
    "schedule/lr", "schedule/reward_alpha", "schedule/env0_resets", "schedule/gravity_scale",
    "perf/collect_fps", "perf/update_fps", "perf/fps", "perf/outside_physics_fraction", "env/blowups",
)


class TrainLogger:
    """Writes one row per iteration to TensorBoard and ``metrics.csv``; shows a rich bar on a TTY."""

    def __init__(self, out_dir: str | Path, total_frames: int, start_iteration: int = 0, start_frames: int = 0,
                 progress: bool | str = "auto", tensorboard: bool = True, print_every: int = 10):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out_dir / "metrics.csv"
        self.print_every = print_every
        self._truncate_csv(start_iteration)
        new = not self.csv_path.exists()
        self._csv_file = open(self.csv_path, "a", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            self._csv.writeheader()
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge what an interrupted run logged after its last checkpoint (steps > start_frames)
            self.writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=start_frames + 1 if start_frames else None)
        show = sys.stdout.isatty() if progress == "auto" else bool(progress)
        self._progress = self._task = None
        if show:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._progress = Progress(TextColumn("[bold]PPO"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
            self._task = self._progress.add_task("train", total=total_frames, completed=start_frames, info="")
            self._progress.start()

    def _truncate_csv(self, start_iteration: int) -> None:
        """Drop rows written after the checkpoint being resumed from (they will be re-run)."""
        if not self.csv_path.exists():
            return
        with open(self.csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if r.get("iteration") and int(r["iteration"]) <= start_iteration]
        with atomic_path(self.csv_path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(keep)

    def log(self, row: dict) -> None:
        frames = int(row["frames"])
        clean = {k: v for k, v in row.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
        self._csv.writerow(clean)
        self._csv_file.flush()
        if self.writer is not None:
            for key, value in clean.items():
                if key not in ("iteration", "frames"):
                    self.writer.add_scalar(key, float(value), frames)
        info = self._summary(clean)
        if self._progress is not None:
            self._progress.update(self._task, completed=frames, info=info)
        elif self.print_every and int(row["iteration"]) % self.print_every == 0:
            print(f"[train_oracle] it {int(row['iteration'])} frames {frames} {info}", flush=True)

    @staticmethod
    def _summary(row: dict) -> str:
        parts = [f"R {row.get('reward/mean', float('nan')):+.3f}"]
        if "episode/rot_r" in row:
            parts.append(f"RotR {row['episode/rot_r']:.2f} TTF {row['episode/ttf']:.2f}")
        parts.append(f"lr {row.get('schedule/lr', float('nan')):.1e} {row.get('perf/fps', 0):.0f} fps")
        return " | ".join(parts)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self.writer is not None:
            self.writer.close()
        self._csv_file.close()
