"""Incremental, crash-safe writer of trajectory datasets (DESIGN.md, "Trajectory datasets").

Rollouts (DexNDM Appendix C: only full-length successful trajectories are kept) and
target-domain collections run for hours; a process killed at any moment must leave a
readable file holding every finished trajectory.  HDF5 is not journaled and a plain
flush is not atomic (a kill inside one left ~1% of files unreadable in a stress test),
and SWMR cannot create groups, so:

* a new file is built under a temporary name (root attrs, empty ``/traj``) and linked
  into place only when whole, so the output path never names a half-made file;
* ``append`` checks the whole trajectory before touching the file, writes its group,
  sets ``complete=True`` last and flushes; HDF5 writes through a ``JournaledFile``
  (``dexndm.data.journal``) that commits each flush atomically, so on disk a trajectory
  is either absent or whole.  A group without the marker (an append that raised) is
  ignored by readers and deleted on resume;
* ``fsync=True`` (default) also orders the commit on disk against power loss.

The file is opened with superblock version 2 (``libver=("v108", "latest")``), not
``libver="latest"``: version 3 marks the file "open for write" in the superblock, and a
killed writer leaves that mark, which makes HDF5 refuse every later open until
``h5clear`` is run on it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

import dexndm
from dexndm.data import schema as S
from dexndm.data.journal import JournaledFile
from dexndm.data.reader import close_h5, open_h5
from dexndm.sim.control import CONTROL_RATE_HZ
from dexndm.hand import constants as hc
from dexndm.sim.observations import ObsLayout

#: Lowest format that has new-style groups but no superblock "open for write" flag.
LIBVER = ("v108", "latest")


class TrajectoryError(S.SchemaError):
    """An appended trajectory does not fit the schema; ``field`` names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"trajectory field {field!r}: {message}")
        self.field = field


def _as_float32(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TrajectoryError(name, f"expected a float array, got dtype {arr.dtype}")
    out = arr.astype(np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        where = np.argwhere(bad)[0].tolist()
        raise TrajectoryError(name, f"{int(bad.sum())} non-finite values (NaN/inf, or too large for "
                                    f"float32), first at index {where}")
    return out


def normalize_trajectory(traj: Mapping[str, Any], width: int | None = None
                         ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Check one trajectory against the field table; return (datasets, attrs) ready to write.

    ``traj`` maps field names to values: q [T+1, 16], target [T, 16], axis [3],
    gravity_dir [3], success, and the optional fields.  ``width`` is the file's
    privileged observation width P, if known.  Raises TrajectoryError naming the field.
    """
    unknown = sorted(set(traj) - set(S.FIELD_BY_NAME))
    if unknown:
        raise TrajectoryError(unknown[0], f"unknown field; the schema has {list(S.FIELD_BY_NAME)}")
    for name in S.REQUIRED:
        if name not in traj and name != "length":
            raise TrajectoryError(name, "required field missing")
    target = _as_float32("target", traj["target"])
    if target.ndim != 2 or target.shape[0] < 1:
        raise TrajectoryError("target", f"expected shape [T, {S.J}] with T >= 1, got {target.shape}")
    T = target.shape[0]
    datasets: dict[str, np.ndarray] = {}
    for name in S.DATASETS:
        if name not in traj or traj[name] is None:
            continue
        arr = target if name == "target" else _as_float32(name, traj[name])
        problem = S.shape_problem(name, arr.shape, T, width)
        if problem:
            raise TrajectoryError(name, problem + f" (T={T} from 'target')")
        datasets[name] = arr
    attrs: dict[str, Any] = {"length": np.int64(T)}
    if "length" in traj and int(traj["length"]) != T:
        raise TrajectoryError("length", f"given as {traj['length']} but 'target' has T={T} steps")
    success = traj["success"]
    if not isinstance(success, (bool, np.bool_)):
        raise TrajectoryError("success", f"expected a bool, got {success!r}")
    attrs["success"] = np.bool_(success)
    for name in ("object_id", "category"):
        if traj.get(name) is not None:
            if not isinstance(traj[name], str) or not traj[name]:
                raise TrajectoryError(name, f"expected a non-empty string, got {traj[name]!r}")
            attrs[name] = traj[name]
    if traj.get("params") is not None:
        if not isinstance(traj["params"], Mapping):
            raise TrajectoryError("params", f"expected a mapping, got {type(traj['params']).__name__}")
        attrs["params"] = S.to_json(traj["params"], "params")
    return datasets, attrs


def _link_into_place(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` without ever replacing an existing ``path``."""
    try:
        os.link(tmp, path)              # atomic and refuses an existing name
    except FileExistsError:
        tmp.unlink()
        raise FileExistsError(f"{path} appeared while it was being created; use another output path") from None
    except OSError:                     # file system without hard links
        if path.exists():
            tmp.unlink()
            raise FileExistsError(f"{path} appeared while it was being created; use another output path")
        os.replace(tmp, path)
        return
    tmp.unlink()


class TrajectoryWriter:
    """Append finished trajectories to an HDF5 dataset; a context manager.

    ``domain`` is ``Domain.to_dict()`` (or a name+params mapping), ``source`` says what
    produced the data ({"kind": "policy", "checkpoint_sha256": ...} or {"kind":
    "collection", "strategy": "chaos_box"}), ``config`` the run's configuration.  An
    existing file is resumed (``resume=True``) only if it was written with the same
    schema, joint order, control rate, domain and source; it is never truncated.
    """

    def __init__(self, path: str | os.PathLike, *, domain: Mapping[str, Any], source: Mapping[str, Any],
                 config: Mapping[str, Any], control_rate_hz: float = CONTROL_RATE_HZ, resume: bool = True,
                 privileged_layout: Mapping[str, Any] | None = None, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self._file: h5py.File | None = None
        self._journal: JournaledFile | None = None
        for name, value in (("domain", domain), ("source", source), ("config", config)):
            if not isinstance(value, Mapping):
                raise S.SchemaError(f"{name} must be a mapping (e.g. Domain.to_dict()), got {type(value).__name__}")
        if not (np.isfinite(control_rate_hz) and control_rate_hz > 0):
            raise S.SchemaError(f"control_rate_hz must be a positive number, got {control_rate_hz!r}")
        root = {
            "schema_version": S.SCHEMA_VERSION, "joint_order": list(hc.JOINT_NAMES),
            "control_rate_hz": float(control_rate_hz),
            "domain": S.to_json(domain, "domain"), "source": S.to_json(source, "source"),
            "config": S.to_json(config, "config"),
        }
        if privileged_layout is not None:
            ObsLayout.from_dict(dict(privileged_layout))       # malformed or another joint order: refuse
            root["privileged_layout"] = S.to_json(privileged_layout, "privileged_layout")
        if self.path.exists():
            if not resume:
                raise FileExistsError(f"{self.path} already exists and resume=False: refusing to overwrite it. "
                                      "Choose another output path, or resume=True to append to it.")
            self._open_existing(root)
        else:
            self._create(root)
        self._width = self._privileged_width()

    # -- opening ---------------------------------------------------------------------------

    def _create(self, root: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.creating-{os.getpid()}")
        with h5py.File(tmp, "w", libver=LIBVER) as f:
            for key, value in root.items():
                f.attrs[key] = np.array(value, dtype=h5py.string_dtype()) if key == "joint_order" else value
            f.attrs["created_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            f.attrs["dexndm_version"] = dexndm.__version__
            f.create_group(S.TRAJ_GROUP)
        if self.fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        _link_into_place(tmp, self.path)
        self._open_journaled()
        self._next, self._count = 0, 0

    def _open_existing(self, root: dict[str, Any]) -> None:
        # Check through a read-only handle first: a refused file is never opened for writing.
        try:
            f = open_h5(self.path)
        except OSError as exc:
            raise OSError(f"cannot resume {self.path}: {exc}. Write to another output path.") from exc
        try:
            self._check_resume(f, root)
        finally:
            close_h5(f)
        self._open_journaled()
        try:
            self._next, self._count = self._drop_incomplete()
        except BaseException:
            self.close()
            raise

    def _open_journaled(self) -> None:
        """Open for appending through the journal (which first replays a crashed commit)."""
        try:
            self._journal = JournaledFile(self.path, fsync=self.fsync)
        except OSError as exc:
            raise OSError(f"cannot open {self.path} for writing: {exc}") from exc
        try:
            self._file = h5py.File(self._journal, "r+", libver=LIBVER)
        except BaseException:
            self._journal.close()
            raise

    def _check_resume(self, f: h5py.File, root: dict[str, Any]) -> None:
        try:
            meta = S.parse_root(f.attrs, str(self.path))
        except S.SchemaError as exc:
            raise S.SchemaError(f"cannot resume: {exc}. Write to another output path.") from None
        if S.TRAJ_GROUP not in f:
            raise S.SchemaError(f"cannot resume {self.path}: no /{S.TRAJ_GROUP} group. Write to another output path.")
        wanted = {k: (v if k not in ("domain", "source", "config", "privileged_layout") else json.loads(v))
                  for k, v in root.items()}
        if meta["control_rate_hz"] != wanted["control_rate_hz"]:
            self._differs("control_rate_hz", f"{meta['control_rate_hz']} Hz vs {wanted['control_rate_hz']} Hz")
        for key in ("domain", "source"):
            diff = S.first_difference(meta[key], wanted[key])
            if diff:
                self._differs(key, diff)
        if "privileged_layout" in wanted:
            diff = S.first_difference(meta.get("privileged_layout"), wanted["privileged_layout"])
            if diff:
                self._differs("privileged_layout", diff)

    def _differs(self, key: str, detail: str) -> None:
        raise S.SchemaError(
            f"cannot resume {self.path}: its {key} differs from this run's ({detail}; file first, this run "
            f"second). Appending would mix data of two {key}s in one file; write to another output path.")

    def _drop_incomplete(self) -> tuple[int, int]:
        """Delete groups an interrupted append left; return (next index, complete count)."""
        group = self._file[S.TRAJ_GROUP]
        last, count, dropped = -1, 0, False
        for name in list(group):
            index = S.parse_group_name(name)
            if index is None:
                continue
            try:
                complete = bool(group[name].attrs.get(S.COMPLETE_ATTR, False))
            except Exception:           # a header the kill cut short
                complete = False
            if complete:
                count += 1
                last = max(last, index)
                continue
            try:
                del group[name]
                dropped = True
            except Exception:           # unlinkable: leave it (readers skip it) and number past it
                last = max(last, index)
        if dropped:
            self._sync()
        return last + 1, count

    def _privileged_width(self) -> int | None:
        layout = self._file.attrs.get("privileged_layout")
        if layout is not None:
            return ObsLayout.from_dict(json.loads(layout)).dim
        group = self._file[S.TRAJ_GROUP]
        for name in group:
            if "privileged_obs" in group[name] and group[name].attrs.get(S.COMPLETE_ATTR, False):
                return int(group[name]["privileged_obs"].shape[1])
        return None

    # -- writing ---------------------------------------------------------------------------

    def _sync(self) -> None:
        """Commit everything written so far, atomically (HDF5 flush -> journal commit)."""
        self._file.flush()

    def append(self, traj: Mapping[str, Any]) -> int:
        """Write one finished trajectory durably; return its index. Nothing is written if it is invalid."""
        if self._file is None:
            raise ValueError(f"writer for {self.path} is closed")
        datasets, attrs = normalize_trajectory(traj, self._width)
        index = self._next
        name = S.group_name(index)
        parent = self._file[S.TRAJ_GROUP]
        try:
            group = parent.create_group(name)
            for key, arr in datasets.items():
                group.create_dataset(key, data=arr)
            for key, value in attrs.items():
                group.attrs[key] = value
            group.attrs[S.COMPLETE_ATTR] = True     # last: it vouches for everything above
            self._sync()                            # one atomic commit
        except BaseException:
            try:                                    # leave no half-written group behind
                if name in parent:
                    del parent[name]
                self._sync()
            except Exception:
                pass
            raise
        if "privileged_obs" in datasets and self._width is None:
            self._width = int(datasets["privileged_obs"].shape[1])
        self._next += 1
        self._count += 1
        return index

    # -- bookkeeping -----------------------------------------------------------------------

    @property
    def next_index(self) -> int:
        """Index the next appended trajectory gets."""
        return self._next

    def __len__(self) -> int:
        """Complete trajectories in the file (including those found on resume)."""
        return self._count

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()                  # flushes: a last commit
            finally:
                self._file = None
                self._journal.close()

    def __enter__(self) -> "TrajectoryWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TrajectoryWriter({str(self.path)!r}, trajectories={self._count}, next_index={self._next})"
