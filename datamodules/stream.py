"""Batch streams over trajectory HDF5 files (DESIGN.md "Trajectory datasets (HDF5)").

``ChunkStream`` walks one epoch plan (``datamodules.plan``): per chunk it takes the
K trajectories from RAM (memory mode) or reads them in one contiguous ``load_all``
(stream mode), gathers windows batch by batch (``datamodules.windows``) and yields
dicts of tensors.  Both modes walk the same plan, so they yield the same batches.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from datamodules import plan as P
from datamodules import windows as Wn
from dexndm.data import schema as S
from dexndm.data.reader import TrajectoryFile
from dexndm.hand import constants as hc

log = logging.getLogger(__name__)
_FLOAT_BYTES = 4


def _file_specs(files: Any) -> list[dict]:
    """Normalise ``files`` (a path, or a list of paths / {path, weight, name}) to dicts."""
    if isinstance(files, (str, os.PathLike)) or isinstance(files, Mapping):
        files = [files]
    out = []
    for n, spec in enumerate(files):
        spec = {"path": spec} if isinstance(spec, (str, os.PathLike)) else dict(spec)
        if "path" not in spec:
            raise ValueError(f"data file entry #{n} {spec} has no 'path'")
        weight = spec.get("weight")
        spec.setdefault("name", Path(spec["path"]).stem)
        out.append({"path": str(spec["path"]), "weight": None if weight is None else float(weight),
                    "name": str(spec["name"])})
    names = [s["name"] for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"data file names must be unique, got {names}; give each entry a 'name'")
    if not out:
        raise ValueError("no data files given")
    if len({s["weight"] is None for s in out}) > 1:
        raise ValueError(f"give a mixing weight to every data file or to none (none: each file in proportion to "
                         f"its size); got {[(s['name'], s['weight']) for s in out]}")
    return out


def inspect_file(path: str, name: str, rate: float | None = None) -> tuple[dict, dict[int, int]]:
    """Meta and {trajectory index: T} of one file; refuses foreign schema, joint order or rate."""
    try:
        with TrajectoryFile(path) as tf:
            meta, lengths = tf.meta, dict(zip(tf.indices, tf.lengths().tolist()))
    except (S.SchemaError, OSError) as exc:
        raise S.SchemaError(f"data file {name!r} ({path}) cannot be used: {exc}. Re-export it with dexndm's "
                            "writer (hardware joint order, current schema) or remove it from the data config") from exc
    if list(meta["joint_order"]) != list(hc.JOINT_NAMES):
        raise S.SchemaError(f"data file {name!r} ({path}) has joint order {meta['joint_order']}, dexndm uses "
                            f"{list(hc.JOINT_NAMES)}; permute its columns to hardware order or remove it")
    if rate is not None and abs(float(meta["control_rate_hz"]) - rate) > 1e-9:
        raise S.SchemaError(f"data file {name!r} ({path}) was recorded at {meta['control_rate_hz']} Hz but the "
                            f"other files at {rate} Hz; files mixed in one dataset must share the control rate "
                            "(resample it or train on it separately)")
    if not lengths:
        raise S.SchemaError(f"data file {name!r} ({path}) holds no complete trajectory")
    return meta, lengths


class ChunkStream(IterableDataset):
    """Batches (dicts of tensors) of one plan: chunks of trajectories, windows gathered per batch.

    ``memory``: per file (data from ``load_all``, {trajectory index: position}) or None to
    read chunks from ``paths``.  Shards chunks over (rank, worker); with ``even`` every
    rank yields the same number of batches (DDP needs it; the surplus is dropped).
    """

    def __init__(self, *, kind: str, window: int, batch_size: int, paths: Sequence[str],
                 trajs: Sequence[Sequence[int]], lengths: Sequence[Mapping[int, int]], weights: Sequence[float],
                 chunk_trajs: int, seed: int, shuffle: bool, samples: int | None = None,
                 memory: Sequence[tuple[dict, dict[int, int]]] | None = None, rank: int = 0, world_size: int = 1,
                 even: bool = False, drop_last: bool = False, with_ids: bool = False):
        self.kind, self.window, self.batch_size = kind, window, int(batch_size)
        self.paths, self.trajs, self.lengths = list(paths), [list(t) for t in trajs], list(lengths)
        self.weights, self.chunk_trajs, self.seed = list(weights), int(chunk_trajs), int(seed)
        self.shuffle, self.samples, self.memory = shuffle, samples, memory
        self.rank, self.world_size, self.even = int(rank), int(world_size), even
        self.drop_last, self.with_ids, self.epoch = drop_last, with_ids, 0
        first = Wn.first_step(kind, window)
        self.counts = [{i: max(int(T) - first, 0) for i, T in ls.items()} for ls in self.lengths]

    def plan(self, epoch: int | None = None) -> list[P.Chunk]:
        return P.epoch_plan(self.trajs, self.counts, self.weights, self.chunk_trajs, self.seed,
                            self.epoch if epoch is None else epoch, self.samples, self.shuffle)

    def _my_chunks(self, chunks: list[P.Chunk], worker: int, workers: int) -> tuple[list[P.Chunk], int | None]:
        mine = P.shard(P.shard(chunks, self.rank, self.world_size), worker, workers)
        if not (self.even and self.world_size > 1):
            return mine, None
        least = min(sum(c.take for c in P.shard(P.shard(chunks, r, self.world_size), worker, workers))
                    for r in range(self.world_size))
        return mine, (least // self.batch_size) * self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        chunks, limit = self._my_chunks(self.plan(), worker, workers)
        opened: dict[int, TrajectoryFile] = {}
        pending: list[dict[str, np.ndarray]] = []
        have = sent = 0
        try:
            for chunk in chunks:
                data, pos_of = self._chunk_data(chunk, opened)
                pos, t = P.chunk_windows(chunk, [self.lengths[chunk.file][i] for i in chunk.trajs],
                                         self.kind, self.window)
                for s in range(0, len(t), self.batch_size):
                    p, tt = pos[s:s + self.batch_size], t[s:s + self.batch_size]
                    part = Wn.gather(self.kind, data, pos_of[p], tt, self.window)
                    if self.with_ids:
                        part.update(file=np.full(len(tt), chunk.file, np.int64),
                                    traj=np.asarray(chunk.trajs, np.int64)[p], t=tt.astype(np.int64))
                    pending.append(part)
                    have += len(tt)
                    while have >= self.batch_size and (limit is None or sent < limit):
                        batch, pending, have = _take(pending, self.batch_size)
                        sent += self.batch_size
                        yield _tensors(batch)
                if limit is not None and sent >= limit:
                    return
            if have and not self.drop_last and limit is None:
                batch, pending, have = _take(pending, have)
                yield _tensors(batch)
        finally:
            for tf in opened.values():
                tf.close()

    def _chunk_data(self, chunk: P.Chunk, opened: dict[int, TrajectoryFile]) -> tuple[dict, np.ndarray]:
        """Arrays holding the chunk's trajectories and, per chunk trajectory, its position in them."""
        if self.memory is not None:
            data, where = self.memory[chunk.file]
            return data, np.array([where[i] for i in chunk.trajs], dtype=np.int64)
        if chunk.file not in opened:
            opened[chunk.file] = TrajectoryFile(self.paths[chunk.file])
        data = opened[chunk.file].load_all(Wn.FIELDS[self.kind], indices=chunk.trajs)
        return data, np.arange(len(chunk.trajs), dtype=np.int64)


def _take(pending: list[dict[str, np.ndarray]], n: int) -> tuple[dict, list, int]:
    """First n samples of the pending parts, and what is left."""
    whole = {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}
    head = {k: v[:n] for k, v in whole.items()}
    rest = {k: v[n:] for k, v in whole.items()}
    left = len(next(iter(rest.values())))
    return head, ([rest] if left else []), left


def _tensors(batch: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


class _EpochLoader(DataLoader):
    """DataLoader that tells its ChunkStream the epoch (the trainer's, else its own count)."""

    def __init__(self, dataset: ChunkStream, epoch_of: Any = None, **kwargs: Any):
        super().__init__(dataset, batch_size=None, **kwargs)
        self._epoch_of, self._count = epoch_of, 0

    def __iter__(self):
        epoch = self._epoch_of() if self._epoch_of is not None else None
        self.dataset.epoch = self._count if epoch is None else int(epoch)
        self._count += 1
        return super().__iter__()
