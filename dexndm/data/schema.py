"""The one trajectory-dataset schema, as data (DESIGN.md, "Trajectory datasets (HDF5)").

Every dexndm stage that records trajectories writes this layout and every stage that
learns from them reads it: sim rollouts of the PPO oracles (DexNDM Appendix C keeps
only full-length successful trajectories; they train the BC generalist and pre-train
the dynamics model), target-domain collection (Chaos Box, Sec. 3.3), and real-hardware
recordings (fine-tuning data for the dynamics model, Sec. 3.4).

File layout (HDF5, one file per run)::

    /                      root attrs: ROOT_ATTRS (JSON mappings stored as str attrs)
    /traj/00000000         one group per trajectory: DATASETS and TRAJ_ATTRS,
    /traj/00000001         plus attr ``complete=True``, written last; a group without
    ...                    it is an interrupted write and is ignored by readers

Shapes are templates over ``T`` (transitions of the trajectory), ``P`` (privileged
observation width, one per file) and fixed sizes; joints are in hardware order
(``dexndm.hand.constants.JOINT_NAMES``), angles in radians.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from dexndm.hand import constants as hc

SCHEMA_VERSION = 1
TRAJ_GROUP = "traj"
COMPLETE_ATTR = "complete"
#: Tolerance (radians) for commanded joint targets outside the joint limits (the env clips them to the limits).
LIMIT_TOLERANCE = 0.02
#: Tolerance (radians) for measured joint positions: MuJoCo's joint limits are soft and a loaded joint passes them
#: (0.023 rad in 1 of 385 rollouts of the released oracles, 2026-12-07), as a motor under load passes its
#: software limit. Wrong units or joint order put values far further out.
MEASURED_LIMIT_TOLERANCE = 0.1
#: Tolerance on the norm of unit vectors (axis, gravity direction, quaternions).
NORM_TOLERANCE = 1e-3

J = hc.NUM_JOINTS


class SchemaError(ValueError):
    """A file or a trajectory does not follow the dataset schema; the message says what and where."""


@dataclass(frozen=True)
class FieldSpec:
    """One per-trajectory field: an HDF5 dataset (``shape`` template) or a group attribute."""

    name: str
    kind: str                       # "dataset" | "attr"
    shape: tuple[int | str, ...]    # dims: int, "T", "T+1" or "P"; () for attrs
    dtype: str                      # float32 | bool | int | str | json
    required: bool
    doc: str


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("q", "dataset", ("T+1", J), "float32", True,
              "joint positions q_0..q_T (rad, hardware order)"),
    FieldSpec("target", "dataset", ("T", J), "float32", True,
              "commanded joint targets a_0..a_{T-1} (rad); q_{t+1} follows target_t"),
    FieldSpec("initial_target", "dataset", (J,), "float32", True,
              "a_{-1}: the target held at reset, before the first command (rad)"),
    FieldSpec("axis", "dataset", (3,), "float32", True, "rotation axis (unit, hand frame)"),
    FieldSpec("gravity_dir", "dataset", (3,), "float32", True,
              "wrist orientation: unit gravity direction in the hand frame"),
    FieldSpec("action", "dataset", ("T", J), "float32", False,
              "policy relative actions in [-1, 1] where a policy acted"),
    FieldSpec("object_pose", "dataset", ("T+1", 7), "float32", False,
              "object position (m) and quaternion (w, x, y, z), hand frame"),
    FieldSpec("fingertip_state", "dataset", ("T+1", 4, 13), "float32", False,
              "per fingertip: position 3, quaternion 4, linear velocity 3, angular velocity 3"),
    FieldSpec("privileged_obs", "dataset", ("T", "P"), "float32", False,
              "oracle observation at each step (layout in root attr privileged_layout)"),
    FieldSpec("length", "attr", (), "int", True, "T, the number of transitions"),
    FieldSpec("success", "attr", (), "bool", True, "the episode succeeded (task-defined)"),
    FieldSpec("object_id", "attr", (), "str", False, "object name, e.g. cuboids/00"),
    FieldSpec("category", "attr", (), "str", False, "object category, e.g. cuboids"),
    FieldSpec("params", "attr", (), "json", False, "randomised physical parameters of the episode"),
)
FIELD_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}
DATASETS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.kind == "dataset")
TRAJ_ATTRS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.kind == "attr")
REQUIRED: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)
#: Datasets whose columns are joints (checked against the joint limits where positions).
JOINT_FIELDS: tuple[str, ...] = ("q", "target", "action", "initial_target")
#: The joint-position fields checked against the joint limits, each with its tolerance beyond them (radians).
LIMIT_TOLERANCES: dict[str, float] = {"q": MEASURED_LIMIT_TOLERANCE, "target": LIMIT_TOLERANCE,
                                      "initial_target": LIMIT_TOLERANCE}
LIMITED_FIELDS: tuple[str, ...] = tuple(LIMIT_TOLERANCES)


@dataclass(frozen=True)
class RootAttr:
    """One root attribute of the file."""

    name: str
    dtype: str                      # int | float | names | json | str
    required: bool
    doc: str


ROOT_ATTRS: tuple[RootAttr, ...] = (
    RootAttr("schema_version", "int", True, "SCHEMA_VERSION of the writer"),
    RootAttr("joint_order", "names", True, "joint names of the 16 columns (hardware order)"),
    RootAttr("control_rate_hz", "float", True, "control rate; one transition per control step"),
    RootAttr("domain", "json", True, "the dynamics domain: Domain.to_dict() or {name, params}"),
    RootAttr("source", "json", True, "what produced the data: {kind: policy|collection|merge|..., ...}"),
    RootAttr("config", "json", True, "the producing run's configuration"),
    RootAttr("privileged_layout", "json", False, "ObsLayout.to_dict() of privileged_obs"),
    RootAttr("created_utc", "str", False, "creation time, ISO 8601"),
    RootAttr("dexndm_version", "str", False, "version of the writing dexndm"),
)
ROOT_BY_NAME: dict[str, RootAttr] = {a.name: a for a in ROOT_ATTRS}


def group_name(index: int) -> str:
    """HDF5 name of trajectory ``index`` under ``/traj``."""
    return f"{index:08d}"


def parse_group_name(name: str) -> int | None:
    """Trajectory index of a group name, or None for a name the writer never makes."""
    return int(name) if len(name) == 8 and name.isdigit() else None


def shape_for(spec: FieldSpec, T: int, P: int | None = None) -> tuple[int | None, ...]:
    """Concrete shape of a dataset for T transitions (None where P is unknown)."""
    dims = {"T": T, "T+1": T + 1, "P": P}
    return tuple(dims[d] if isinstance(d, str) else d for d in spec.shape)


def template(spec: FieldSpec) -> str:
    """Human-readable shape template, e.g. ``[T+1, 16]``."""
    return "[" + ", ".join(str(d) for d in spec.shape) + "]"


def shape_problem(name: str, shape: tuple[int, ...], T: int, P: int | None = None) -> str | None:
    """Why ``shape`` is wrong for dataset ``name`` with T transitions, or None if it fits."""
    spec = FIELD_BY_NAME[name]
    want = shape_for(spec, T, P)
    if len(shape) != len(want):
        return f"expected {len(want)} dims {template(spec)}, got shape {tuple(shape)}"
    if name in JOINT_FIELDS and shape[-1] != J:
        return f"has {shape[-1]} joint columns, expected {J} (shape {tuple(shape)}, template {template(spec)})"
    wrong = [spec.shape[i] for i, (s, w) in enumerate(zip(shape, want)) if w is not None and s != w]
    if wrong:
        why = ("inconsistent T" if wrong[0] in ("T", "T+1") else
               "width differs from the file's P" if wrong[0] == "P" else "wrong size")
        return f"expected shape {template(spec)} = {tuple(want)} for T={T}, got {tuple(shape)} ({why})"
    return None


# -- JSON attributes ---------------------------------------------------------------------------


def _plain(obj: Any) -> Any:
    """numpy and tuple values as plain JSON types."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def to_json(obj: Any, what: str = "value") -> str:
    """Canonical JSON (sorted keys) of a mapping; equal data gives equal strings."""
    try:
        return json.dumps(obj, sort_keys=True, default=_plain, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{what} must be JSON-serialisable plain data (numbers finite): {exc}") from exc


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where two JSON-like values first differ, e.g. ``kp[3]: 3.0 vs 4.0`` (a's value first); None if equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                return f"{sub}: present in only one ({'first' if key in a else 'second'})"
            diff = first_difference(a[key], b[key], sub)
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path or '<root>'}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            diff = first_difference(x, y, f"{path}[{i}]")
            if diff:
                return diff
        return None
    return None if a == b else f"{path or '<root>'}: {a!r} vs {b!r}"


# -- root attributes ---------------------------------------------------------------------------


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def root_problems(attrs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(attr, message) for every way the root attrs break the schema; [] when they fit."""
    problems: list[tuple[str, str]] = []
    for spec in ROOT_ATTRS:
        if spec.required and spec.name not in attrs:
            problems.append((spec.name, "missing required root attribute; not a dexndm trajectory file "
                                        "or written by a broken writer"))
    if "schema_version" in attrs:
        v = attrs["schema_version"]
        if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)):
            problems.append(("schema_version", f"must be an integer, got {v!r}"))
        elif int(v) > SCHEMA_VERSION:
            problems.append(("schema_version", f"file has schema version {int(v)}, newer than this dexndm's "
                                               f"{SCHEMA_VERSION}; upgrade dexndm to read it"))
        elif int(v) != SCHEMA_VERSION:
            problems.append(("schema_version", f"unknown schema version {int(v)}; this dexndm reads "
                                               f"version {SCHEMA_VERSION}"))
    if "joint_order" in attrs:
        names = [_str(n) for n in np.atleast_1d(attrs["joint_order"])]
        if len(names) != J:
            problems.append(("joint_order", f"{len(names)} joint names, expected {J}: {names}"))
        elif names != list(hc.JOINT_NAMES):
            bad = [i for i, (x, y) in enumerate(zip(names, hc.JOINT_NAMES)) if x != y]
            problems.append(("joint_order", f"joint order differs from dexndm's hardware order at columns "
                                            f"{bad}: file {[names[i] for i in bad]} vs "
                                            f"{[hc.JOINT_NAMES[i] for i in bad]}; reorder the data with "
                                            "dexndm.hand.constants.to_hardware_order"))
    if "control_rate_hz" in attrs:
        rate = attrs["control_rate_hz"]
        if not isinstance(rate, (int, float, np.number)) or not np.isfinite(rate) or rate <= 0:
            problems.append(("control_rate_hz", f"must be a positive number, got {rate!r}"))
    for spec in ROOT_ATTRS:
        if spec.dtype == "json" and spec.name in attrs:
            try:
                value = json.loads(_str(attrs[spec.name]))
            except (TypeError, ValueError) as exc:
                problems.append((spec.name, f"not valid JSON: {exc}"))
                continue
            if not isinstance(value, dict):
                problems.append((spec.name, f"must be a JSON mapping, got {type(value).__name__}"))
    return problems


def parse_root(attrs: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """Root attrs as plain Python (JSON parsed); SchemaError naming the first problem."""
    problems = root_problems(attrs)
    if problems:
        where = f"{path}: " if path else ""
        raise SchemaError(where + "; ".join(f"{name}: {msg}" for name, msg in problems))
    meta: dict[str, Any] = {}
    for spec in ROOT_ATTRS:
        if spec.name not in attrs:
            continue
        value = attrs[spec.name]
        if spec.dtype == "int":
            meta[spec.name] = int(value)
        elif spec.dtype == "float":
            meta[spec.name] = float(value)
        elif spec.dtype == "names":
            meta[spec.name] = [_str(n) for n in np.atleast_1d(value)]
        elif spec.dtype == "json":
            meta[spec.name] = json.loads(_str(value))
        else:
            meta[spec.name] = _str(value)
    return meta
