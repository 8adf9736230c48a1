"""Read trajectory datasets (DESIGN.md, "Trajectory datasets (HDF5)").

The files feed BC of the generalist and dynamics pre-training / fine-tuning (DexNDM
Appendix C and Sec. 3.4).  Per-window random reads through h5py cost about 10 us
each, so training code calls ``load_all`` once: every trajectory's datasets are
read whole (contiguous, one read each) into preallocated arrays, and windows are
gathered from those in numpy/torch.

A file is refused at open, before any data is returned, when its schema version is
unknown or newer, a required root attribute is missing, or its joint order is not
dexndm's hardware order.  Groups without ``complete=True`` (a write cut short) are
invisible.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np

from dexndm.data import schema as S
from dexndm.data.journal import JournalView, read_journal


def open_h5(path: str | os.PathLike, locking: bool = True) -> h5py.File:
    """Open a trajectory file read-only, with a message that says what to do when it fails.

    If a writer was killed while committing, its whole journal is applied in a
    read-only view (``dexndm.data.journal``), so the file reads as of that commit.
    Close it with ``close_h5``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trajectory file at {path}")
    view = None
    try:
        journal = read_journal(path)
        if journal is None:
            return h5py.File(path, "r", locking=locking)
        view = JournalView(path, journal, locking)
        f = h5py.File(view, "r")
        f._dexndm_view = view           # closed by close_h5
        return f
    except OSError as exc:
        if view is not None:
            view.close()
        if "unable to lock file" in str(exc):
            raise OSError(f"{path} is open for writing by another process (a collection in progress?): wait "
                          "for it to finish, or read a snapshot with locking=False (CLI: --no-lock)") from exc
        raise OSError(f"{path} is not a readable HDF5 file ({exc})") from exc


def close_h5(f: h5py.File) -> None:
    """Close a file from ``open_h5`` (and the journal view under it, if any)."""
    view = getattr(f, "_dexndm_view", None)
    f.close()
    if view is not None:
        view.close()


def complete_indices(group: h5py.Group) -> list[int]:
    """Sorted indices of the groups marked complete; damaged or unmarked groups are skipped."""
    out = []
    for name in group:
        index = S.parse_group_name(name)
        if index is None:
            continue
        try:
            if bool(group[name].attrs.get(S.COMPLETE_ATTR, False)):
                out.append(index)
        except Exception:       # a group whose header a killed writer never finished
            continue
    return sorted(out)


def _attr(name: str, value: Any) -> Any:
    if name == "length":
        return int(value)
    if name == "success":
        return bool(value)
    if name == "params":
        return json.loads(value)
    return value.decode() if isinstance(value, bytes) else str(value)


class TrajectoryFile:
    """Read-only view of the complete trajectories of one dataset file.

    ``meta`` holds the parsed root attrs (domain, source and config as dicts),
    ``indices`` the complete trajectory indices, ``load(i)`` one trajectory as a dict
    of numpy arrays and plain attrs.
    """

    def __init__(self, path: str | os.PathLike, *, locking: bool = True):
        self.path = Path(path)
        self._file = open_h5(self.path, locking)
        try:
            self._meta = S.parse_root(self._file.attrs, str(self.path))
            if S.TRAJ_GROUP not in self._file:
                raise S.SchemaError(f"{self.path}: no /{S.TRAJ_GROUP} group; not a dexndm trajectory file")
            self._group = self._file[S.TRAJ_GROUP]
            self._indices = complete_indices(self._group)
            self._index_set = set(self._indices)
        except BaseException:
            close_h5(self._file)
            raise

    @property
    def meta(self) -> dict[str, Any]:
        """Root attrs: schema_version, joint_order, control_rate_hz, domain, source, config, ..."""
        return json.loads(json.dumps(self._meta))

    @property
    def indices(self) -> list[int]:
        """Indices of the complete trajectories, ascending."""
        return list(self._indices)

    def __len__(self) -> int:
        return len(self._indices)

    def _get(self, index: int) -> h5py.Group:
        if index not in self._index_set:
            span = f"{self._indices[0]}..{self._indices[-1]}" if self._indices else "none"
            raise KeyError(f"{self.path} has no complete trajectory {index} (complete: {len(self)}, indices {span})")
        return self._group[S.group_name(index)]

    def load(self, index: int, fields: Sequence[str] | None = None) -> dict[str, Any]:
        """Trajectory ``index``: datasets as numpy (q [T+1, 16], target [T, 16], ...) and attrs.

        ``fields`` limits what is read (default: everything stored).
        """
        group = self._get(index)
        wanted = list(fields) if fields is not None else [*S.DATASETS, *S.TRAJ_ATTRS]
        out: dict[str, Any] = {}
        try:
            datasets, attrs = set(group), set(group.attrs)
            for name in wanted:
                if name not in S.FIELD_BY_NAME:
                    raise KeyError(f"unknown field {name!r}; the schema has {list(S.FIELD_BY_NAME)}")
                spec = S.FIELD_BY_NAME[name]
                if spec.kind == "dataset" and name in datasets:
                    out[name] = group[name][()]
                elif spec.kind == "attr" and name in attrs:
                    out[name] = _attr(name, group.attrs[name])
                elif fields is not None:
                    raise KeyError(f"trajectory {index} of {self.path} has no field {name!r}")
        except (OSError, RuntimeError) as exc:
            raise OSError(f"trajectory {index} of {self.path} is damaged ({exc}); "
                          "run `dexndm data validate` on the file") from exc
        return out

    def iter(self, fields: Sequence[str] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """(index, trajectory) for every complete trajectory, in index order."""
        for index in self._indices:
            yield index, self.load(index, fields)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for _, traj in self.iter():
            yield traj

    @property
    def incomplete(self) -> list[int]:
        """Indices of groups without the ``complete`` marker (writes cut short); never loaded."""
        names = (S.parse_group_name(name) for name in self._group)
        return sorted(i for i in names if i is not None and i not in self._index_set)

    def attrs(self, index: int) -> dict[str, Any]:
        """The attrs of trajectory ``index`` (length, success, object_id, ...) without reading data."""
        attrs = self._get(index).attrs
        return {name: _attr(name, attrs[name]) for name in S.TRAJ_ATTRS if name in attrs}

    def fields(self, index: int) -> list[str]:
        """Names of the fields (datasets and attrs) trajectory ``index`` holds."""
        group = self._get(index)
        present = set(group) | set(group.attrs)
        return [f.name for f in S.FIELDS if f.name in present]

    def lengths(self) -> np.ndarray:
        """T of every complete trajectory ([N], from the length attrs; no data read)."""
        return np.array([int(self._group[S.group_name(i)].attrs["length"]) for i in self._indices], dtype=np.int64)

    def load_all(self, fields: Sequence[str] | None = None, indices: Sequence[int] | None = None) -> dict[str, Any]:
        """Every (or the given) trajectory in memory, per-step fields concatenated over time.

        Returns per-step datasets concatenated ([sum T, ...] for T-fields such as target,
        [sum (T+1), ...] for q-like fields), per-trajectory datasets stacked ([N, 3]),
        attrs as arrays ([N]; params as a list of dicts), and the bookkeeping
        ``index`` [N], ``length`` [N], ``step_offsets`` [N+1] (trajectory n's steps are
        rows step_offsets[n]:step_offsets[n+1]) and ``state_offsets`` [N+1] (its q rows).
        Default fields: the required ones and every optional one all trajectories have.
        """
        idx = list(self._indices if indices is None else indices)
        groups = [self._get(i) for i in idx]
        if fields is None:
            fields = [f.name for f in S.FIELDS
                      if f.required or all((f.name in g) if f.kind == "dataset" else (f.name in g.attrs) for g in groups)]
            fields = fields if groups else list(S.REQUIRED)
        lengths = np.array([int(g.attrs["length"]) for g in groups], dtype=np.int64)
        step_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        state_offsets = step_offsets + np.arange(len(idx) + 1)
        out: dict[str, Any] = {"index": np.array(idx, dtype=np.int64), "length": lengths,
                               "step_offsets": step_offsets, "state_offsets": state_offsets}
        for name in fields:
            if name not in S.FIELD_BY_NAME:
                raise KeyError(f"unknown field {name!r}; the schema has {list(S.FIELD_BY_NAME)}")
            spec = S.FIELD_BY_NAME[name]
            missing = [i for i, g in zip(idx, groups) if name not in (g if spec.kind == "dataset" else g.attrs)]
            if missing:
                raise KeyError(f"field {name!r} is missing from {len(missing)} trajectories of {self.path} "
                               f"(first: {missing[0]}); load other fields or select indices")
            if spec.kind == "attr":
                values = [_attr(name, g.attrs[name]) for g in groups]
                out[name] = values if name == "params" else np.array(values)
                continue
            out[name] = self._gather(name, spec, groups, idx, step_offsets, state_offsets)
        return out

    def _gather(self, name: str, spec: S.FieldSpec, groups: list[h5py.Group], idx: list[int],
                step_offsets: np.ndarray, state_offsets: np.ndarray) -> np.ndarray:
        """Read one dataset of every trajectory into a preallocated array (one read each)."""
        lead = spec.shape[0] if spec.shape else None
        offsets = step_offsets if lead == "T" else state_offsets if lead == "T+1" else np.arange(len(idx) + 1)
        if groups and lead in ("T", "T+1"):
            tail = tuple(groups[0][name].shape[1:])
        else:                      # no trajectories selected: symbolic sizes (e.g. "P") are 0
            dims = spec.shape[1:] if lead in ("T", "T+1") else spec.shape
            tail = tuple(d if isinstance(d, int) else 0 for d in dims)
        out = np.empty((int(offsets[-1]), *tail) if lead in ("T", "T+1") else (len(idx), *tail), dtype=np.float32)
        for n, (i, g) in enumerate(zip(idx, groups)):
            ds = g[name]
            want = (int(offsets[n + 1] - offsets[n]), *tail) if lead in ("T", "T+1") else tail
            if ds.shape != want:
                raise S.SchemaError(f"trajectory {i} of {self.path}: {name} has shape {ds.shape}, expected {want} "
                                    "(length attr and data disagree, or widths differ); run `dexndm data validate`")
            dest = np.s_[int(offsets[n]):int(offsets[n + 1])] if lead in ("T", "T+1") else np.s_[n]
            ds.read_direct(out, dest_sel=dest)
        return out

    def close(self) -> None:
        close_h5(self._file)

    def __enter__(self) -> "TrajectoryFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TrajectoryFile({str(self.path)!r}, trajectories={len(self)})"
