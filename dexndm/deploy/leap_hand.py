"""The LEAP hand on a :class:`~dexndm.deploy.bus.DynamixelBus`.

Sixteen XC330-class motors, IDs 0-15 in the canonical joint order
(:mod:`dexndm.hand.constants`), run in current-based position mode (5) with PID
gains and a goal current acting as the current limit (LEAP_FACTS.md, Hardware).
All unit conversions live in the functions below; callers see radians in the
simulator convention (real = sim + pi), rad/s and mA. Commands are clamped to the
joint limits and to ``max_step_rad`` per tick, and :meth:`LeapHand.command` returns
the command actually sent.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from dexndm.deploy.bus import DynamixelBus
from dexndm.hand.constants import JOINT_LOWER, JOINT_UPPER, NUM_JOINTS

# ---- units (the one place) -------------------------------------------------------
TICKS_PER_REV = 4096
RAD_PER_TICK = 2 * math.pi / TICKS_PER_REV
RPM_PER_VELOCITY_UNIT = 0.229
MA_PER_CURRENT_UNIT = 1.34
SIDE_JOINTS = (0, 4, 8)  # MCP side (abduction) of index, middle, ring
OPERATING_MODE_CURRENT_POSITION = 5
MAX_GAIN = 16383  # XC330 position gain register range
SUPPORTED_BAUDRATES = (57_600, 115_200, 1_000_000, 2_000_000, 3_000_000, 4_000_000)


def rad_to_ticks(q_sim: np.ndarray) -> np.ndarray:
    """Sim-convention radians -> position ticks (sim 0 rad == 2048 ticks). ``[16]`` int64."""
    return np.rint((np.asarray(q_sim, dtype=np.float64) + math.pi) / RAD_PER_TICK).astype(np.int64)


def ticks_to_rad(ticks: np.ndarray) -> np.ndarray:
    """Position ticks -> sim-convention radians (real = sim + pi)."""
    return np.asarray(ticks, dtype=np.float64) * RAD_PER_TICK - math.pi


def velocity_to_rad_s(units: np.ndarray) -> np.ndarray:
    return np.asarray(units, dtype=np.float64) * RPM_PER_VELOCITY_UNIT * 2 * math.pi / 60.0


#: Goal-position tick range inside the joint limits: a quantised command never leaves them.
LIMIT_TICKS_LOW = np.ceil((np.asarray(JOINT_LOWER) + math.pi) / RAD_PER_TICK - 1e-9).astype(np.int64)
LIMIT_TICKS_HIGH = np.floor((np.asarray(JOINT_UPPER) + math.pi) / RAD_PER_TICK + 1e-9).astype(np.int64)


def command_ticks(q_sim: np.ndarray) -> np.ndarray:
    """Goal-position ticks of a (clamped) command ``[16]``, rounded but kept inside the joint limits."""
    return np.clip(rad_to_ticks(q_sim), LIMIT_TICKS_LOW, LIMIT_TICKS_HIGH)


def clamp_command(q_target: np.ndarray, last: np.ndarray, max_step: float) -> np.ndarray:
    """The command for ``q_target`` [16] (sim rad): NaN/inf hold ``last``, then joint limits, then at
    most ``max_step`` rad from ``last`` per joint (shared by every hand, so all clamp alike)."""
    q = np.asarray(q_target, dtype=np.float64).reshape(-1)
    if q.shape != (NUM_JOINTS,):
        raise ValueError(f"expected {NUM_JOINTS} joint targets, got shape {np.shape(q_target)}")
    q = np.where(np.isfinite(q), q, last)
    q = np.clip(q, JOINT_LOWER, JOINT_UPPER)
    return np.clip(q, last - max_step, last + max_step)


def current_to_ma(units: np.ndarray) -> np.ndarray:
    return np.asarray(units, dtype=np.float64) * MA_PER_CURRENT_UNIT


def ma_to_current(ma: float) -> int:
    return int(round(ma / MA_PER_CURRENT_UNIT))


# ---- config ----------------------------------------------------------------------
@dataclass
class LeapHandConfig:
    """Bus and motor settings; :meth:`validate` runs at construction and again in connect()."""

    port: str = "/dev/ttyUSB0"
    baudrate: int = 4_000_000
    kp: float = 800
    ki: float = 0
    kd: float = 200
    side_kp_scale: float = 0.75
    current_limit_ma: float = 350
    return_delay: int = 0
    max_step_rad: float = 0.25  # per tick
    min_reply_timeout_ms: float = 0.0  # 0: the SDK's reply timeout (right for motors); software hands raise it

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming every bad field, before any motor is touched."""
        errs = []
        if not isinstance(self.port, str) or not self.port:
            errs.append(f"port must be a non-empty device path, got {self.port!r}")
        if self.baudrate not in SUPPORTED_BAUDRATES:
            errs.append(f"baudrate {self.baudrate} not in {SUPPORTED_BAUDRATES}")
        for name in ("kp", "ki", "kd"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= MAX_GAIN):
                errs.append(f"{name} must be in [0, {MAX_GAIN}], got {v!r}")
        if not (isinstance(self.side_kp_scale, (int, float)) and 0 < self.side_kp_scale <= 1):
            errs.append(f"side_kp_scale must be in (0, 1], got {self.side_kp_scale!r}")
        c = self.current_limit_ma
        if not (isinstance(c, (int, float)) and math.isfinite(c) and 0 < c <= 600):
            errs.append(f"current_limit_ma must be in (0, 600] mA (overheating above), got {c!r}")
        if not (isinstance(self.return_delay, int) and 0 <= self.return_delay <= 254):
            errs.append(f"return_delay must be an int in [0, 254] (units of 2 us), got {self.return_delay!r}")
        s = self.max_step_rad
        if not (isinstance(s, (int, float)) and math.isfinite(s) and s > 0):
            errs.append(f"max_step_rad must be a positive finite number, got {s!r}")
        t = self.min_reply_timeout_ms
        if not (isinstance(t, (int, float)) and math.isfinite(t) and 0 <= t <= 5000):
            errs.append(f"min_reply_timeout_ms must be in [0, 5000], got {t!r}")
        if errs:
            raise ValueError("invalid LeapHandConfig: " + "; ".join(errs))


# ---- robot -----------------------------------------------------------------------
class LeapHand:
    """The hand: ``connect()``, ``read()``, ``command(q)``, ``disable()``; a context manager.

    ``realtime``: time passes on its own (the loop paces itself to the control rate);
    simulated hands advance one tick per command instead (:mod:`dexndm.deploy.sim_hand`).
    """

    realtime = True

    def __init__(self, config: LeapHandConfig, bus: DynamixelBus | None = None) -> None:
        config.validate()
        self.config = config
        self.ids = list(range(NUM_JOINTS))
        self.bus = bus or DynamixelBus(config.port, config.baudrate, ids=self.ids,
                                       min_reply_timeout_ms=config.min_reply_timeout_ms)
        self.last_command: np.ndarray | None = None  # [16] sim rad, what was last sent

    def _all(self, value: int) -> dict[int, int]:
        return {i: int(value) for i in self.ids}

    def connect(self) -> None:
        """Open the bus and configure every motor with sync writes, then enable torque.

        The goal is set to the present position before torque goes on so the hand
        does not jump; that position also seeds the per-tick step limit.
        """
        cfg = self.config
        cfg.validate()
        self.bus.connect()
        b = self.bus
        b.sync_write("torque_enable", self._all(0))  # EEPROM (mode, delay) is locked while on
        b.sync_write("operating_mode", self._all(OPERATING_MODE_CURRENT_POSITION))
        b.sync_write("return_delay_time", self._all(cfg.return_delay))
        kp = {i: int(round(cfg.kp * (cfg.side_kp_scale if i in SIDE_JOINTS else 1.0))) for i in self.ids}
        b.sync_write("position_p_gain", kp)
        b.sync_write("position_i_gain", self._all(round(cfg.ki)))
        b.sync_write("position_d_gain", self._all(round(cfg.kd)))
        b.sync_write("goal_current", self._all(ma_to_current(cfg.current_limit_ma)))
        q = self.read()["q"]  # also proves every motor answers
        ticks = rad_to_ticks(q)
        b.sync_write("goal_position", {i: int(t) for i, t in zip(self.ids, ticks)})
        self.last_command = ticks_to_rad(ticks)
        b.sync_write("torque_enable", self._all(1))

    def read(self) -> dict[str, np.ndarray]:
        """One sync read: ``q`` [16] sim rad, ``qdot`` [16] rad/s, ``current`` [16] mA."""
        block = self.bus.sync_read_block("present_current", "present_position")
        raw = np.array(
            [[block[i]["present_position"], block[i]["present_velocity"], block[i]["present_current"]] for i in self.ids]
        )
        return {"q": ticks_to_rad(raw[:, 0]), "qdot": velocity_to_rad_s(raw[:, 1]), "current": current_to_ma(raw[:, 2])}

    def clamp(self, q_target: np.ndarray) -> np.ndarray:
        """The command that would be sent for ``q_target`` [16] (no bus traffic)."""
        if self.last_command is None:
            raise RuntimeError("LeapHand is not connected; call connect() first")
        return clamp_command(q_target, self.last_command, self.config.max_step_rad)

    def command(self, q_target: np.ndarray) -> np.ndarray:
        """Clamp, send as one goal-position sync write, and return what was sent ([16] sim rad)."""
        ticks = command_ticks(self.clamp(q_target))
        self.bus.sync_write("goal_position", {i: int(t) for i, t in zip(self.ids, ticks)})
        self.last_command = ticks_to_rad(ticks)
        return self.last_command.copy()

    def disable(self) -> None:
        """Torque off on every motor."""
        self.bus.sync_write("torque_enable", self._all(0))

    def hardware_error_status(self, dxl_id: int) -> int:
        """Register 70 of one motor (bits: see ``bus.HARDWARE_ERROR_BITS``); 0 when healthy."""
        return self.bus.read("hardware_error_status", dxl_id, allow_alert=True)

    def describe(self) -> dict:
        """What the recording stores as its domain: this is the real hand, with its bus settings.
        The serial port is left out: it names a USB slot, not the hand, and a resumed collection
        must not be refused because the adapter came back as another /dev entry."""
        params = dataclasses.asdict(self.config)
        params.pop("port", None)
        return {"name": "leap_real", "params": params}

    def start_target(self) -> np.ndarray:
        """Where a run starts by default on hardware: the canonical grasp pose (paper, Isaac order
        mapped in ``dexndm.hand.constants``); place the object once the hand is there."""
        from dexndm.hand.constants import CANONICAL_POSE

        return np.clip(np.asarray(CANONICAL_POSE, dtype=np.float64), JOINT_LOWER, JOINT_UPPER)

    def object_pose(self) -> np.ndarray | None:
        """Object pose [7] where the hand knows it (simulation); None on hardware."""
        return None

    def close(self) -> None:
        """Torque off (best effort) and close the port."""
        try:
            if self.bus.port_handler is not None:
                self.disable()
        finally:
            self.bus.close()

    def __enter__(self) -> LeapHand:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
