"""Which trajectories train, and in what order samples come (DexNDM Appendix C, data scaling).

* The train/val split is by trajectory, per file, seeded, and saved as JSON (lists of
  [file name, trajectory index]) so a run and its evaluation see the same split.
* An epoch is a list of *chunks*: K trajectories of one file, read together (one
  contiguous ``load_all``) and a seeded number of their windows taken in seeded order.
  Trajectories are shuffled into chunks per file and pass; chunks of all files are
  interleaved by a seeded permutation.  File f contributes round(S * w_f / sum w)
  samples per epoch of S samples (passes repeat or truncate), so mixing weights hold
  exactly.  The plan depends only on (seed, epoch, K), never on where the data lives,
  so in-memory and streaming modes give the same samples in the same order.
* Sharding (DDP ranks x DataLoader workers) deals whole chunks round-robin.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

SPLIT_VERSION = 1


@dataclass(frozen=True)
class Chunk:
    """K trajectories of file ``file`` read together; ``take`` of their windows in order ``seed``."""

    file: int
    trajs: tuple[int, ...]      # trajectory indices in the file, in plan order
    take: int                   # samples to draw (<= windows of these trajectories)
    seed: tuple[int, ...]       # seeds the window permutation (None-like () = time order)


def make_split(names: Sequence[str], indices: Sequence[Sequence[int]], split: float, seed: int) -> dict:
    """Seeded split by trajectory, per file: {"train": [[name, i], ...], "val": [...]}, sorted."""
    if not 0.0 < split <= 1.0:
        raise ValueError(f"split must be in (0, 1], got {split}")
    train, val = [], []
    for k, (name, idx) in enumerate(zip(names, indices)):
        idx = np.asarray(sorted(idx), dtype=np.int64)
        perm = np.random.default_rng([seed, k, 11]).permutation(len(idx))
        n_val = int(round((1.0 - split) * len(idx))) if len(idx) > 1 else 0
        n_val = min(n_val, len(idx) - 1)
        val += [[name, int(i)] for i in sorted(idx[perm[:n_val]])]
        train += [[name, int(i)] for i in sorted(idx[perm[n_val:]])]
    return {"version": SPLIT_VERSION, "seed": int(seed), "split": float(split), "files": list(names),
            "train": train, "val": val}


def save_split(path: str | os.PathLike, split: dict) -> None:
    """Write the split JSON atomically (a crash leaves the old file or none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Per-process temp name: DDP ranks compute the same seeded split and may save it at once.
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(split, indent=1))
    os.replace(tmp, path)


def load_split(path: str | os.PathLike, names: Sequence[str], indices: Sequence[Sequence[int]]) -> dict:
    """Read a saved split and check it refers to these files and existing trajectories."""
    data = json.loads(Path(path).read_text())
    if data.get("version") != SPLIT_VERSION or not {"train", "val", "files"} <= set(data):
        raise ValueError(f"{path} is not a dexndm split file (version {SPLIT_VERSION}); delete it to make a new split")
    if sorted(data["files"]) != sorted(names):
        raise ValueError(f"split {path} was made for files {data['files']}, this run has {list(names)}; "
                         "use another split_path or delete the file to re-split")
    have = {name: set(int(i) for i in idx) for name, idx in zip(names, indices)}
    for part in ("train", "val"):
        for name, i in data[part]:
            if int(i) not in have[name]:
                raise ValueError(f"split {path} lists trajectory {i} of file {name!r}, which that file does not "
                                 "hold (complete); the data changed: delete the split file to re-split")
    return data


def keep_fraction(trajs: Sequence[int], fraction: float, seed: int, file: int) -> list[int]:
    """Seeded subset of round(fraction * n) (at least 1) training trajectories, sorted."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    trajs = sorted(trajs)
    if fraction >= 1.0 or not trajs:
        return list(trajs)
    n = max(1, int(round(fraction * len(trajs))))
    perm = np.random.default_rng([seed, file, 13]).permutation(len(trajs))[:n]
    return sorted(trajs[i] for i in perm)


def epoch_plan(trajs: Sequence[Sequence[int]], counts: Sequence[dict[int, int]], weights: Sequence[float | None],
               chunk_trajs: int, seed: int, epoch: int, samples: int | None = None,
               shuffle: bool = True) -> list[Chunk]:
    """The chunks of one epoch.

    ``trajs[f]``: trajectory indices of file f; ``counts[f][i]``: windows of trajectory i.
    With ``shuffle`` False (validation) every window of every file is taken once, in file,
    trajectory and time order.  Otherwise file f yields round(samples * w_f / sum w)
    windows (default ``samples``: all windows of all files).  Weights of None stand for
    each file's own window count (natural proportions: one pass over everything).
    """
    if chunk_trajs < 1:
        raise ValueError(f"chunk size must be >= 1 trajectory, got {chunk_trajs}")
    if not shuffle:
        return [Chunk(f, tuple(ts[s:s + chunk_trajs]), sum(counts[f][i] for i in ts[s:s + chunk_trajs]), ())
                for f, ts in enumerate(trajs) for s in range(0, len(ts), chunk_trajs)]
    total = [sum(counts[f][i] for i in ts) for f, ts in enumerate(trajs)]
    w = np.asarray([t if wt is None else wt for wt, t in zip(weights, total)], dtype=float)
    if len(w) != len(trajs) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"mixing weights must be >= 0 with a positive sum, one per file; got {list(weights)} "
                         f"(files with no windows in this split: {[f for f, t in enumerate(total) if t == 0]})")
    samples = int(sum(total)) if samples is None else int(samples)
    want = np.round(samples * w / w.sum()).astype(np.int64)
    chunks: list[Chunk] = []
    for f, ts in enumerate(trajs):
        if want[f] == 0:
            continue
        if total[f] == 0:
            raise ValueError(f"file #{f} has weight {w[f]} but no windows in this split (trajectories shorter "
                             "than the window?); give it weight 0 or use a shorter window")
        left, p = int(want[f]), 0
        while left > 0:
            order = np.random.default_rng([seed, epoch, f, p, 17]).permutation(len(ts))
            for c, s in enumerate(range(0, len(ts), chunk_trajs)):
                group = tuple(int(ts[j]) for j in order[s:s + chunk_trajs])
                n = sum(counts[f][i] for i in group)
                if n == 0:
                    continue
                take = min(n, left)
                chunks.append(Chunk(f, group, take, (seed, epoch, f, p, c)))
                left -= take
                if left == 0:
                    break
            p += 1
    order = np.random.default_rng([seed, epoch, 19]).permutation(len(chunks))
    return [chunks[i] for i in order]


def shard(chunks: Sequence[Chunk], index: int, count: int) -> list[Chunk]:
    """Chunks of shard ``index`` of ``count`` (round robin): disjoint, and together all of them."""
    return list(chunks[index::count])


def chunk_windows(chunk: Chunk, lengths: Sequence[int], kind: str, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The chunk's samples as (position of the trajectory within the chunk [S], step t [S]), in draw order."""
    from datamodules.windows import window_index

    pos, t = window_index(np.asarray(lengths, dtype=np.int64), kind, window)
    if chunk.seed:
        perm = np.random.default_rng(list(chunk.seed) + [23]).permutation(len(t))[:chunk.take]
        pos, t = pos[perm], t[perm]
    return pos[:chunk.take], t[:chunk.take]
