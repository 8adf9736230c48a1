"""Check, summarise and merge trajectory datasets (DESIGN.md, "Trajectory datasets (HDF5)").

``validate`` reports every way a file breaks the schema, including on files the reader
refuses, so a bad collection is found before it reaches training (BC and dynamics
training consume these files; DexNDM Appendix C keeps only full-length successful
rollouts).  ``info`` summarises a file; ``merge`` joins compatible files, e.g. the
per-category oracle rollouts into the one BC dataset.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from dexndm.data import schema as S
from dexndm.data.reader import TrajectoryFile, close_h5, complete_indices, open_h5
from dexndm.data.writer import TrajectoryWriter, _link_into_place
from dexndm.hand import constants as hc


@dataclass(frozen=True)
class Problem:
    """One schema violation: trajectory ``index`` (None for the file), ``field``, ``message``."""

    index: int | None
    field: str
    message: str

    def __str__(self) -> str:
        if self.index is None:
            return f"file: {self.message}" if self.field == "file" else f"file {self.field}: {self.message}"
        return f"traj {S.group_name(self.index)} {self.field}: {self.message}"


def _where(name: str, flat_pos: tuple[int, ...]) -> str:
    """A position in a dataset in words: t and joint for joint fields."""
    if name in S.JOINT_FIELDS and len(flat_pos) == 2:
        return f"t={flat_pos[0]}, joint {hc.JOINT_NAMES[flat_pos[1]]} ({flat_pos[1]})"
    return f"index {list(flat_pos)}"


def _limit_problems(index: int, name: str, x: np.ndarray) -> list[Problem]:
    """One problem per joint whose values leave [lower, upper] by more than the field's tolerance."""
    tolerance = S.LIMIT_TOLERANCES[name]
    with np.errstate(invalid="ignore"):
        over = x - hc.JOINT_UPPER                  # > 0 above the upper limit ([T, 16])
        under = hc.JOINT_LOWER - x                 # > 0 below the lower limit
        excess = np.fmax(over, under)              # NaN only where x is NaN (reported elsewhere)
        outside = excess > tolerance
    out = []
    for j in np.flatnonzero(outside.any(axis=0)):
        t = int(np.nanargmax(excess[:, j]))
        above = over[t, j] >= under[t, j]
        side, limit = ("above the upper", hc.JOINT_UPPER[j]) if above else ("below the lower", hc.JOINT_LOWER[j])
        out.append(Problem(index, name, f"joint {hc.JOINT_NAMES[j]} ({j}) outside its limits "
                                        f"[{hc.JOINT_LOWER[j]:.3f}, {hc.JOINT_UPPER[j]:.3f}] in "
                                        f"{int(outside[:, j].sum())} samples: worst {excess[t, j]:.3f} rad {side} "
                                        f"limit {limit:.3f} at t={t} (value {x[t, j]:.3f}; tolerance "
                                        f"{tolerance} rad)"))
    return out


def _norm_problem(index: int, name: str, v: np.ndarray, what: str) -> Problem | None:
    dev = np.abs(np.linalg.norm(v, axis=-1) - 1.0)
    if not np.all(dev <= S.NORM_TOLERANCE):
        worst = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(dev), dev, np.inf))), dev.shape)
        norm = float(np.linalg.norm(v[worst]))
        return Problem(index, name, f"{what} has norm {norm:.4f}, expected 1 (within {S.NORM_TOLERANCE})"
                                    + (f" at {list(worst)}" if dev.ndim else ""))
    return None


def _check_trajectory(index: int, g: h5py.Group, widths: dict[str, int]) -> list[Problem]:
    """Every problem of one complete trajectory group (each dataset opened and read once)."""
    out: list[Problem] = []
    members, attr_names = set(g), set(g.attrs)
    for key in sorted(members - set(S.DATASETS)):
        out.append(Problem(index, key, f"unknown dataset; schema version {S.SCHEMA_VERSION} has {list(S.DATASETS)}"))
    for key in sorted(attr_names - set(S.TRAJ_ATTRS) - {S.COMPLETE_ATTR}):
        out.append(Problem(index, key, f"unknown attribute; the schema has {list(S.TRAJ_ATTRS)}"))
    for name in S.REQUIRED:
        spec = S.FIELD_BY_NAME[name]
        if name not in (members if spec.kind == "dataset" else attr_names):
            out.append(Problem(index, name, f"required {spec.kind} missing"))
    length = g.attrs["length"] if "length" in attr_names else None
    if length is not None and (not isinstance(length, (int, np.integer)) or int(length) < 1):
        out.append(Problem(index, "length", f"must be a positive integer, got {length!r}"))
        length = None
    datasets = {name: g[name] for name in S.DATASETS if name in members}
    T = None
    if "target" in datasets and datasets["target"].ndim == 2:
        T = int(datasets["target"].shape[0])
        if length is not None and int(length) != T:
            out.append(Problem(index, "length", f"length attr says {int(length)} but target has {T} steps"))
    elif length is not None:
        T = int(length)
    if "success" in attr_names and not isinstance(g.attrs["success"], (bool, np.bool_)):
        out.append(Problem(index, "success", f"must be a bool, got {g.attrs['success']!r}"))
    if "params" in attr_names:
        try:
            json.loads(g.attrs["params"])
        except (TypeError, ValueError) as exc:
            out.append(Problem(index, "params", f"not valid JSON: {exc}"))
    if T is None:
        return out
    for name, ds in datasets.items():
        shape, dtype = ds.shape, ds.dtype
        if dtype.kind != "f":
            out.append(Problem(index, name, f"dtype {dtype}, expected float32"))
            continue
        if name == "privileged_obs" and len(shape) == 2:
            width = widths.setdefault("P", int(shape[1]))
            if shape[1] != width:
                out.append(Problem(index, name, f"width {shape[1]} differs from the file's {width}"))
                continue
        problem = S.shape_problem(name, shape, T, widths.get("P"))
        if problem:
            out.append(Problem(index, name, problem))
            continue
        x = ds[()]
        bad = ~np.isfinite(x)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            out.append(Problem(index, name, f"{int(bad.sum())} non-finite values (NaN/inf), first at "
                                            f"{_where(name, first)}"))
        if name in S.LIMITED_FIELDS:
            out += _limit_problems(index, name, x)
        elif bad.any():
            continue
        elif name in ("axis", "gravity_dir"):
            out.append(_norm_problem(index, name, x, name))
        elif name == "object_pose":
            out.append(_norm_problem(index, name, x[:, 3:7], "object quaternion"))
        elif name == "fingertip_state":
            out.append(_norm_problem(index, name, x[..., 3:7], "fingertip quaternion"))
    return [p for p in out if p is not None]


def validate(path: str | os.PathLike, *, locking: bool = True) -> list[Problem]:
    """Every schema violation of a file (root attrs and every complete trajectory); [] when valid.

    Incomplete groups (a write cut short by a crash) are not problems: readers skip them.
    """
    try:
        f = open_h5(path, locking)
    except OSError as exc:          # FileNotFoundError included
        return [Problem(None, "file", str(exc))]
    try:
        return _validate_open(f)
    finally:
        close_h5(f)


def _validate_open(f: h5py.File) -> list[Problem]:
    """validate() on an open file."""
    problems = [Problem(None, name, msg) for name, msg in S.root_problems(f.attrs)]
    if S.TRAJ_GROUP not in f:
        return problems + [Problem(None, S.TRAJ_GROUP, "no /traj group; not a dexndm trajectory file")]
    widths: dict[str, int] = {}
    with contextlib.suppress(Exception):
        layout = json.loads(f.attrs["privileged_layout"])
        widths["P"] = int(sum(int(w) for _, w in layout["fields"]))
    group = f[S.TRAJ_GROUP]
    for index in complete_indices(group):
        try:
            problems += _check_trajectory(index, group[S.group_name(index)], widths)
        except (OSError, RuntimeError, KeyError) as exc:
            problems.append(Problem(index, "group", f"cannot be read ({exc})"))
    return problems


def info(path: str | os.PathLike, *, locking: bool = True) -> dict[str, Any]:
    """Summary of a file: counts, transitions, length stats, categories, success ratio, domain, size."""
    with TrajectoryFile(path, locking=locking) as tf:
        meta = tf.meta
        lengths, success, categories, objects, optional = [], 0, Counter(), set(), Counter()
        for index in tf.indices:
            attrs = tf.attrs(index)
            lengths.append(attrs["length"])
            success += attrs["success"]
            categories[attrs.get("category", "(none)")] += 1
            if "object_id" in attrs:
                objects.add(attrs["object_id"])
            optional.update(name for name in tf.fields(index) if not S.FIELD_BY_NAME[name].required)
        lengths = np.array(lengths, dtype=np.int64)
        n = len(tf)
        rate = meta["control_rate_hz"]
        return {
            "path": str(tf.path), "file_size_bytes": tf.path.stat().st_size,
            "schema_version": meta["schema_version"], "control_rate_hz": rate,
            "trajectories": n, "incomplete_groups": len(tf.incomplete),
            "transitions": int(lengths.sum()), "duration_s": float(lengths.sum() / rate),
            "length": {"min": int(lengths.min()) if n else 0, "mean": float(lengths.mean()) if n else 0.0,
                       "max": int(lengths.max()) if n else 0},
            "success_ratio": success / n if n else None,
            "categories": dict(sorted(categories.items())), "objects": len(objects),
            "domains": {str(meta["domain"].get("name", "unnamed")): n},
            "source": meta["source"], "optional_fields": dict(optional),
            "created_utc": meta.get("created_utc"),
        }


def _compatibility(first: TrajectoryFile, other: TrajectoryFile) -> str | None:
    """Why ``other`` cannot be merged with ``first``, or None."""
    a, b = first.meta, other.meta
    if a["control_rate_hz"] != b["control_rate_hz"]:
        return f"control rate {b['control_rate_hz']} Hz vs {a['control_rate_hz']} Hz"
    diff = S.first_difference(a["domain"], b["domain"])
    if diff:
        return (f"domain differs ({diff}; first input's value first): one file must hold one domain's "
                "dynamics, or training could not tell them apart")
    diff = S.first_difference(a.get("privileged_layout"), b.get("privileged_layout"))
    if diff:
        return f"privileged_layout differs ({diff})"
    return None


def merge(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *, locking: bool = True) -> int:
    """Copy the complete trajectories of compatible files, in order, into a new file; return the count.

    Compatible: same schema version and joint order (the reader enforces both), control
    rate, domain and privileged layout.  The output's source is {"kind": "merge",
    "inputs": [...]} with each input's path, source and config.  The output appears only
    when complete; an existing output is never overwritten.
    """
    output = Path(output)
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ValueError("merge needs at least one input file")
    if output.exists():
        raise FileExistsError(f"{output} already exists; merge writes a new file, choose another output path")
    if len({p.resolve() for p in paths}) != len(paths):
        raise ValueError("the same input file is given twice; its trajectories would be duplicated")
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(TrajectoryFile(p, locking=locking)) for p in paths]
        for tf in files[1:]:
            reason = _compatibility(files[0], tf)
            if reason:
                raise S.SchemaError(f"cannot merge {tf.path} with {files[0].path}: {reason}")
        first = files[0].meta
        source = {"kind": "merge", "inputs": [
            {"path": str(tf.path.resolve()), "trajectories": len(tf), "source": tf.meta["source"],
             "config": tf.meta["config"]} for tf in files]}
        tmp = output.with_name(f".{output.name}.merging-{os.getpid()}")
        try:
            with TrajectoryWriter(tmp, domain=first["domain"], source=source,
                                  config={"merge": [str(p) for p in paths]},
                                  control_rate_hz=first["control_rate_hz"], resume=False,
                                  privileged_layout=first.get("privileged_layout"), fsync=False) as writer:
                for tf in files:
                    for _, traj in tf.iter():
                        writer.append(traj)
                count = len(writer)
            with open(tmp, "rb") as fh:             # durable once, before it takes the output's name
                os.fsync(fh.fileno())
            _link_into_place(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
    return count
