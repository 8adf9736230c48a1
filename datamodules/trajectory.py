"""LightningDataModule over trajectory HDF5 files (DESIGN.md "Trajectory datasets (HDF5)";
DexNDM Sec. 3.2 BC of the generalist, Sec. 3.3 and Appendix C dynamics-model training).

One or more files mixed by weight, split by trajectory (seeded, saved as JSON in
``split_path``), optionally subsampled (``fraction``, the data-scaling knob), with
normalisation statistics from the train split only (``datamodule.stats``: plain lists,
for checkpoints).  ``mode="memory"`` holds the selected trajectories in RAM;
``mode="stream"`` reads K whole trajectories at a time, K sized from
``memory_budget_mb``.  Both modes yield the same batches for the same seed.

Batches are dicts of float32 tensors: dynamics {q_hist [B, W, 16], a_hist [B, W, 16],
q_next [B, 16]}; bc {obs [B, 327], action [B, 16]}; ``with_ids`` adds int64
``file``/``traj``/``t`` per sample.  Under DDP each rank reads its own chunks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import lightning as L
import numpy as np

from datamodules import plan as P
from datamodules import windows as Wn
from datamodules.stream import ChunkStream, _EpochLoader, _file_specs, inspect_file
from dexndm.data.reader import TrajectoryFile
from dexndm.hand import constants as hc

_STEP_FIELDS = {"dynamics": 2, "bc": 3}     # per-step [16] float32 rows a chunk holds (q, target[, action])


class TrajectoryDataModule(L.LightningDataModule):
    """Windows of trajectory files for dynamics training (``kind="dynamics"``) or BC (``"bc"``).

    ``files``: a path or a list of paths / {"path", "weight", "name"} (weights: shares of
    the samples of an epoch; none given: each file in proportion to its size); ``eval_files``:
    {name: path} of extra validation sets (every trajectory, after the val split's
    loader).  ``window``: W for dynamics, the deploy history H for bc.
    """

    def __init__(self, files: Any, kind: str = "dynamics", window: int = 10, batch_size: int = 256,
                 fraction: float = 1.0, split: float = 0.9, seed: int = 0, split_path: str | os.PathLike | None = None,
                 eval_files: Mapping[str, str] | None = None, mode: str = "memory", memory_budget_mb: float = 512.0,
                 chunk_trajectories: int | None = None, samples_per_epoch: int | None = None, num_workers: int = 0,
                 rank: int | None = None, world_size: int | None = None, even_batches: bool = True,
                 drop_last: bool = False, with_ids: bool = False):
        super().__init__()
        if mode not in ("memory", "stream"):
            raise ValueError(f"mode must be 'memory' or 'stream', got {mode!r}")
        if window < 1 or batch_size < 1:
            raise ValueError(f"window and batch_size must be >= 1, got {window}, {batch_size}")
        self.kind, self.window, self.batch_size = Wn.check_kind(kind), int(window), int(batch_size)
        self.files = _file_specs(files)
        self.eval_files = {str(k): str(v) for k, v in (eval_files or {}).items()}
        self.fraction, self.split_frac, self.seed = float(fraction), float(split), int(seed)
        self.split_path = None if split_path is None else Path(split_path)
        self.mode, self.memory_budget_mb = mode, float(memory_budget_mb)
        self.chunk_trajectories, self.samples_per_epoch = chunk_trajectories, samples_per_epoch
        self.num_workers, self.rank, self.world_size = int(num_workers), rank, world_size
        self.even_batches, self.drop_last, self.with_ids = even_batches, drop_last, with_ids
        self.stats: dict[str, Any] | None = None
        self.split: dict | None = None
        self._ready = False

    # -- setup ---------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Check files, make or reload the split, compute train stats, load RAM (memory mode)."""
        if self._ready:
            return
        rate = None
        self.lengths: list[dict[int, int]] = []
        for spec in self.files:
            meta, lengths = inspect_file(spec["path"], spec["name"], rate)
            rate = float(meta["control_rate_hz"])
            self.lengths.append(lengths)
        self.control_rate_hz = rate
        self.eval_lengths = {name: inspect_file(path, name, rate)[1] for name, path in self.eval_files.items()}
        names = [s["name"] for s in self.files]
        indices = [sorted(ls) for ls in self.lengths]
        if self.split_path is not None and self.split_path.is_file():
            self.split = P.load_split(self.split_path, names, indices)
        else:
            self.split = P.make_split(names, indices, self.split_frac, self.seed)
            if self.split_path is not None:
                P.save_split(self.split_path, self.split)
        part = {p: [[int(i) for n, i in self.split[p] if n == name] for name in names] for p in ("train", "val")}
        self.train_trajs = [P.keep_fraction(ts, self.fraction, self.seed, f) for f, ts in enumerate(part["train"])]
        self.val_trajs = part["val"]
        self.chunk_trajs = self.chunk_trajectories or self._chunk_from_budget()
        self._memory = None
        if self.mode == "memory":
            self._memory = {"train": self._load_ram([s["path"] for s in self.files], self.train_trajs),
                            "val": self._load_ram([s["path"] for s in self.files], self.val_trajs),
                            **{name: self._load_ram([path], [sorted(self.eval_lengths[name])])
                               for name, path in self.eval_files.items()}}
        self.stats = self._compute_stats()
        self._ready = True

    def _chunk_from_budget(self) -> int:
        """Trajectories per chunk so that one chunk plus two batches fit ``memory_budget_mb``."""
        longest = max(max(ls.values()) for ls in [*self.lengths, *self.eval_lengths.values()])
        per_traj = (longest + 1) * _STEP_FIELDS[self.kind] * hc.NUM_JOINTS * 4
        per_sample = sum(int(np.prod(s)) for s in Wn.sample_shapes(self.kind, self.window).values()) * 4
        room = self.memory_budget_mb * 2 ** 20 - 2 * self.batch_size * per_sample
        return max(1, int(room // per_traj))

    def _load_ram(self, paths: list[str], trajs: list[list[int]]) -> list[tuple[dict, dict[int, int]]]:
        out = []
        for path, ts in zip(paths, trajs):
            with TrajectoryFile(path) as tf:
                data = tf.load_all(Wn.FIELDS[self.kind], indices=ts)
            out.append((data, {int(i): n for n, i in enumerate(ts)}))
        return out

    def _stream(self, which: str, *, shuffle: bool, rank: int = 0, world_size: int = 1, even: bool = False,
                drop_last: bool = False) -> ChunkStream:
        if which in ("train", "val"):
            paths = [s["path"] for s in self.files]
            trajs = self.train_trajs if which == "train" else self.val_trajs
            lengths = [{i: ls[i] for i in ts} for ls, ts in zip(self.lengths, trajs)]
            weights = [s["weight"] for s in self.files]
        else:
            paths, lengths, weights = [self.eval_files[which]], [self.eval_lengths[which]], [None]
            trajs = [sorted(lengths[0])]
        memory = None if self._memory is None else self._memory[which]
        return ChunkStream(kind=self.kind, window=self.window, batch_size=self.batch_size, paths=paths, trajs=trajs,
                           lengths=lengths, weights=weights, chunk_trajs=self.chunk_trajs, seed=self.seed,
                           shuffle=shuffle, samples=self.samples_per_epoch if shuffle else None, memory=memory,
                           rank=rank, world_size=world_size, even=even, drop_last=drop_last, with_ids=self.with_ids)

    def _compute_stats(self) -> dict[str, Any]:
        """Per-feature mean/std of every batch key over all train samples (each once)."""
        sums: dict[str, list] = {}
        for batch in self._stream("train", shuffle=False):
            for key in Wn.sample_shapes(self.kind, self.window):
                x = batch[key].double().numpy()
                x = x.reshape(-1, x.shape[-1])
                acc = sums.setdefault(key, [0, 0.0, 0.0])
                acc[0] += len(x)
                acc[1] = acc[1] + x.sum(0)
                acc[2] = acc[2] + (x * x).sum(0)
        stats: dict[str, Any] = {"kind": self.kind, "window": self.window, "joint_order": list(hc.JOINT_NAMES),
                                 "control_rate_hz": self.control_rate_hz}
        for key, (n, s, ss) in sums.items():
            mean = s / n
            std = np.sqrt(np.maximum(ss / n - mean ** 2, 0.0))
            std = np.where(std < 1e-6, 1.0, std)           # constant features: leave unscaled
            stats[key] = {"mean": mean.tolist(), "std": std.tolist(), "count": int(n)}
        return stats

    # -- loaders -------------------------------------------------------------------------------

    def _dist(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        rank = self.rank if self.rank is not None else (trainer.global_rank if trainer is not None else 0)
        world = self.world_size if self.world_size is not None else (trainer.world_size if trainer is not None else 1)
        return int(rank), int(world)

    def _loader(self, stream: ChunkStream, epoch_of: Any = None) -> _EpochLoader:
        return _EpochLoader(stream, epoch_of, num_workers=self.num_workers,
                            persistent_workers=False, pin_memory=False)

    def train_dataloader(self) -> _EpochLoader:
        self.setup()
        rank, world = self._dist()
        stream = self._stream("train", shuffle=True, rank=rank, world_size=world, even=self.even_batches,
                              drop_last=self.drop_last)
        trainer = getattr(self, "trainer", None)
        return self._loader(stream, (lambda: trainer.current_epoch) if trainer is not None else None)

    @property
    def val_names(self) -> list[str]:
        """Names of the val dataloaders, in order: "val" then the eval sets."""
        return ["val", *self.eval_files]

    def val_dataloader(self) -> list[_EpochLoader]:
        self.setup()
        rank, world = self._dist()
        return [self._loader(self._stream(name, shuffle=False, rank=rank, world_size=world))
                for name in self.val_names]

    def state_dict(self) -> dict[str, Any]:
        """Saved in Lightning checkpoints: the normalisation statistics and the split."""
        return {"stats": self.stats, "split": self.split}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats = state.get("stats", self.stats)
