"""One interface, three hands, chosen by config (``conf/hand/{sim,emulated,leap}.yaml``).

Every hand offers ``connect() / read() / clamp(q) / command(q) -> sent / disable() /
close()``, ``last_command`` [16], ``start_target()``, ``describe()`` (the recording's
domain), ``object_pose()`` (None on hardware) and ``realtime`` (whether time passes on
its own or per command):

* ``sim``       :class:`~dexndm.deploy.sim_hand.SimHand` - a MuJoCo target domain;
* ``emulated``  :class:`~dexndm.deploy.emulated_hand.EmulatedHand` - the real driver and
  ``dynamixel_sdk`` over a pty emulator whose motors follow a SimHand;
* ``leap``      :class:`~dexndm.deploy.leap_hand.LeapHand` - the real hand on a U2D2.

Hardware configs are typed dataclasses, validated (unknown keys named) before a motor moves.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from dexndm.deploy.emulated_hand import EmulatedHand, EmulatedHandConfig
from dexndm.deploy.leap_hand import LeapHand, LeapHandConfig
from dexndm.deploy.sim_hand import SimHand, SimHandConfig
from dexndm.typed_config import from_mapping

HAND_KINDS = ("sim", "emulated", "leap")


@dataclass
class HandSpec:
    """``kind`` plus the settings of the parts that kind uses (``sim`` for sim/emulated, ``leap``
    for emulated/leap)."""

    kind: str = "sim"
    sim: SimHandConfig = field(default_factory=SimHandConfig)
    leap: LeapHandConfig = field(default_factory=LeapHandConfig)
    emulate_wire_time: bool = True
    reply_timeout_ms: float = EmulatedHandConfig.reply_timeout_ms   # emulated: the driver's reply timeout

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HandSpec:
        data = dict(data)
        kind = data.get("kind", "sim")
        if kind not in HAND_KINDS:
            raise ValueError(f"hand.kind must be one of {HAND_KINDS}, got {kind!r}")
        valid = tuple(f.name for f in dataclasses.fields(cls))
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(f"hand: unknown keys {unknown}; valid keys: {', '.join(valid)}")
        return cls(kind, from_mapping(SimHandConfig, data.get("sim"), "hand.sim"),
                   from_mapping(LeapHandConfig, data.get("leap"), "hand.leap"), bool(data.get("emulate_wire_time", True)),
                   float(data.get("reply_timeout_ms", EmulatedHandConfig.reply_timeout_ms)))


def make_hand(spec: HandSpec | Mapping[str, Any]) -> SimHand | EmulatedHand | LeapHand:
    """An unconnected hand of ``spec.kind`` (call ``connect()`` or use it as a context manager)."""
    spec = spec if isinstance(spec, HandSpec) else HandSpec.from_dict(spec)
    if spec.kind == "sim":
        return SimHand(spec.sim)
    if spec.kind == "emulated":
        return EmulatedHand(EmulatedHandConfig(spec.sim, spec.leap, spec.emulate_wire_time, spec.reply_timeout_ms))
    return LeapHand(spec.leap)
