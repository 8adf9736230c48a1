"""Domains: a hand's dynamics described relative to the nominal model.

A domain is a YAML file.  ``nominal.yaml`` (shipped in ``dexndm/domains``) is the
source domain and holds every parameter; any other domain file names only the
parameters it changes and is merged over nominal.  Unknown keys and impossible values
are rejected with the key named, so a typo cannot silently leave a gap un-modelled.

This is how dexndm stands in a "target domain" for the real hand (the paper's
sim-to-sim setting, DexNDM Sec. 4.2 and Appendix B.4): the same builder with other
numbers.  Per-joint values are scalars or 16-lists in the order named by
``joint_order`` (``hardware`` or ``isaac``), stored here in hardware order.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dexndm.hand import constants as hc
from dexndm.hand.geometry import LINKS

DOMAIN_DIR = Path(__file__).resolve().parents[1] / "domains"

# Schema: section -> key -> kind. Kinds: "joint" (scalar or 16-list, >= 0),
# "pos" (float > 0), "nonneg" (float >= 0), "int" (int >= 0), "bodymap" ({body: float > 0}),
# "signed_joint" (scalar or 16-list, any sign).
SCHEMA: dict[str, dict[str, str]] = {
    "actuator": {"kp": "joint", "kd": "joint", "kp_scale": "joint", "kd_scale": "joint", "torque_limit": "joint"},
    "joint": {"damping": "joint", "armature": "joint", "frictionloss": "joint", "backlash": "joint"},
    "links": {"mass": "bodymap", "mass_scale": "pos"},
    "friction": {"link": "pos", "fingertip": "pos"},
    "latency": {"control_steps": "int", "physics_steps": "int"},
    "sensor": {"joint_noise_std": "nonneg", "joint_bias": "signed_joint"},
    "object": {"friction_scale": "pos", "mass_scale": "pos"},
    "physics": {"gravity": "nonneg", "timestep": "pos", "substeps": "int"},
}
TOP_LEVEL = {"name", "description", "joint_order", "base", *SCHEMA}
BODY_NAMES = tuple(link.name for link in LINKS)


class DomainError(ValueError):
    """A domain file is malformed; the message names the offending key."""


@dataclass(frozen=True)
class Domain:
    """Resolved dynamics of one hand; per-joint arrays are [16] in hardware order."""

    name: str
    description: str
    kp: np.ndarray
    kd: np.ndarray
    torque_limit: np.ndarray
    damping: np.ndarray
    armature: np.ndarray
    frictionloss: np.ndarray
    backlash: np.ndarray
    link_mass: dict[str, float]
    link_friction: float
    fingertip_friction: float
    latency_control_steps: int
    latency_physics_steps: int
    joint_noise_std: float
    joint_bias: np.ndarray
    object_friction_scale: float
    object_mass_scale: float
    gravity: float
    timestep: float
    substeps: int
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def control_dt(self) -> float:
        return self.timestep * self.substeps

    def to_dict(self) -> dict[str, Any]:
        """Full parameters as plain YAML-able data (for dataset and checkpoint metadata)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "raw":
                continue
            v = getattr(self, f.name)
            out[f.name] = v.tolist() if isinstance(v, np.ndarray) else v
        return out


def _check_number(path: str, value: Any, kind: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DomainError(f"{path}: expected a number, got {value!r}")
    if not np.isfinite(value):
        raise DomainError(f"{path}: must be finite, got {value!r}")
    if kind == "int":
        if int(value) != value or value < 0:
            raise DomainError(f"{path}: expected a non-negative integer, got {value!r}")
        return int(value)
    if kind == "pos" and value <= 0:
        raise DomainError(f"{path}: must be > 0, got {value!r}")
    if kind in ("nonneg", "joint") and value < 0:
        raise DomainError(f"{path}: must be >= 0, got {value!r}")
    return float(value)


def _check_joint(path: str, value: Any, order: str, signed: bool) -> np.ndarray:
    kind = "signed" if signed else "joint"
    if isinstance(value, (list, tuple)):
        if len(value) != hc.NUM_JOINTS:
            raise DomainError(f"{path}: a per-joint list needs {hc.NUM_JOINTS} values, got {len(value)}")
        arr = np.array([_check_number(f"{path}[{i}]", v, kind) for i, v in enumerate(value)])
        return hc.to_hardware_order(arr, order)
    return np.full(hc.NUM_JOINTS, _check_number(path, value, kind))


def _validate(data: Any, source: str) -> None:
    """Reject unknown keys and wrong shapes, naming the key."""
    if not isinstance(data, dict):
        raise DomainError(f"{source}: a domain file must be a mapping, got {type(data).__name__}")
    for key in data:
        if key not in TOP_LEVEL:
            raise DomainError(f"{source}: unknown key {key!r}; valid keys: {sorted(TOP_LEVEL)}")
    order = data.get("joint_order", "hardware")
    if order not in hc.JOINT_ORDERS:
        raise DomainError(f"{source}: joint_order must be one of {hc.JOINT_ORDERS}, got {order!r}")
    for section, keys in SCHEMA.items():
        if section not in data:
            continue
        body = data[section]
        if not isinstance(body, dict):
            raise DomainError(f"{source}: {section} must be a mapping")
        for key, value in body.items():
            path = f"{source}: {section}.{key}"
            if key not in keys:
                raise DomainError(f"{path}: unknown key; valid keys in {section}: {sorted(keys)}")
            kind = keys[key]
            if kind in ("joint", "signed_joint"):
                _check_joint(path, value, order, signed=kind == "signed_joint")
            elif kind == "bodymap":
                if not isinstance(value, dict):
                    raise DomainError(f"{path}: expected a mapping body -> kg")
                for body_name, mass in value.items():
                    if body_name not in BODY_NAMES:
                        raise DomainError(f"{path}.{body_name}: unknown body; valid bodies: {list(BODY_NAMES)}")
                    _check_number(f"{path}.{body_name}", mass, "pos")
            else:
                _check_number(path, value, kind)


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "mass":
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DomainError(f"{path}: not valid YAML ({exc})") from exc


def _resolve(data: dict, order: str) -> Domain:
    s, ph = data["sensor"], data["physics"]
    joint = lambda sec, key, signed=False: _check_joint(f"{sec}.{key}", data[sec][key], order, signed)  # noqa: E731
    kp = joint("actuator", "kp") * joint("actuator", "kp_scale")
    kd = joint("actuator", "kd") * joint("actuator", "kd_scale")
    nominal_mass = {link.name: link.mass for link in LINKS}
    masses = {name: float(data["links"].get("mass", {}).get(name, m)) * float(data["links"]["mass_scale"])
              for name, m in nominal_mass.items()}
    domain = Domain(
        name=str(data.get("name", "unnamed")), description=str(data.get("description", "")),
        kp=kp, kd=kd, torque_limit=joint("actuator", "torque_limit"),
        damping=joint("joint", "damping"), armature=joint("joint", "armature"),
        frictionloss=joint("joint", "frictionloss"), backlash=joint("joint", "backlash"),
        link_mass=masses, link_friction=float(data["friction"]["link"]),
        fingertip_friction=float(data["friction"]["fingertip"]),
        latency_control_steps=int(data["latency"]["control_steps"]),
        latency_physics_steps=int(data["latency"]["physics_steps"]),
        joint_noise_std=float(s["joint_noise_std"]), joint_bias=joint("sensor", "joint_bias", True),
        object_friction_scale=float(data["object"]["friction_scale"]),
        object_mass_scale=float(data["object"]["mass_scale"]),
        gravity=float(ph["gravity"]), timestep=float(ph["timestep"]), substeps=int(ph["substeps"]),
        raw=data,
    )
    if domain.substeps < 1:
        raise DomainError("physics.substeps: must be >= 1")
    if domain.latency_physics_steps >= domain.substeps:
        raise DomainError("latency.physics_steps: must be < physics.substeps (use control_steps for longer delays)")
    if np.any(domain.torque_limit <= 0):
        raise DomainError("actuator.torque_limit: must be > 0 for every joint")
    if np.any(domain.kp <= 0):
        raise DomainError("actuator.kp: must be > 0 for every joint (a joint without stiffness cannot hold a target)")
    if np.any((domain.backlash > 0) & (domain.armature <= 0)):
        raise DomainError("joint.backlash: needs joint.armature > 0 on the same joints (the motor side needs inertia)")
    return domain


def available_domains() -> list[str]:
    """Names of the shipped domain presets."""
    return sorted(p.stem for p in DOMAIN_DIR.glob("*.yaml"))


def _find(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if not path.suffix:
        path = DOMAIN_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise DomainError(f"domain {str(name_or_path)!r} not found: pass a preset name "
                          f"({', '.join(available_domains())}) or the path to a domain YAML file")
    return path


def _load_override(data: Any, source: str, chain: tuple[str, ...] = ()) -> dict:
    """Validate one domain mapping and resolve its ``base``; lists come back in hardware order."""
    if data is None:
        data = {}
    if isinstance(data, dict) and "base" in data:
        data = dict(data)
        base_name = data.pop("base")
        if str(base_name) in chain:
            raise DomainError(f"{source}: base: cycle through {' -> '.join(chain + (str(base_name),))}")
        base_path = _find(base_name)
        base = _load_override(_read_yaml(base_path), str(base_path), chain + (str(base_name),))
    else:
        base = {}
    _validate(data, source)
    data = _to_order(data, data.get("joint_order", "hardware"), "hardware")
    data["joint_order"] = "hardware"
    return _merge(base, data)


def load_domain(name_or_path: str | Path | dict | None = None) -> Domain:
    """Load a shipped preset by name, a domain YAML file by path, or a dict; merged over nominal.

    A domain may name ``base: <preset or path>`` to build on another domain.
    """
    nominal = _load_override(_read_yaml(DOMAIN_DIR / "nominal.yaml"), "nominal.yaml")
    if name_or_path is None or name_or_path == "nominal":
        override = {}
    elif isinstance(name_or_path, dict):
        override = _load_override(name_or_path, "<dict>")
    else:
        path = _find(name_or_path)
        override = _load_override(_read_yaml(path), str(path), (str(name_or_path),))
    return _resolve(_merge(nominal, override), "hardware")


def _to_order(data: dict, src: str, dst: str) -> dict:
    """Rewrite every 16-list of ``data`` from joint order ``src`` to ``dst``."""
    if src == dst:
        return copy.deepcopy(data)
    out = copy.deepcopy(data)
    for section, keys in SCHEMA.items():
        for key, kind in keys.items():
            value = out.get(section, {}).get(key)
            if kind in ("joint", "signed_joint") and isinstance(value, list):
                out[section][key] = hc.from_hardware_order(hc.to_hardware_order(np.array(value), src), dst).tolist()
    return out
