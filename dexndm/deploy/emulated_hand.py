"""``EmulatedHand``: the whole hardware stack against a simulated hand, no hardware needed.

A :class:`~dexndm.deploy.emulator.DynamixelEmulator` serves 16 motors on a
pseudo-terminal; their present position, velocity and current come from a
:class:`~dexndm.deploy.sim_hand.SimHand`, and every goal-position sync write with
torque on advances that SimHand by one control tick (1/20 s) to the written goals.
On top sits the real driver, :class:`~dexndm.deploy.leap_hand.LeapHand` on a
``DynamixelBus`` on the real ``dynamixel_sdk``: the control loop cannot tell it from a
LEAP hand, except that time advances per command (``realtime = False``), which
makes a run deterministic and comparable to the same loop on the SimHand directly.

Faults are injected through ``hand.emulator`` (``faults``, ``set_hardware_error``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dexndm.deploy.bus import BusError
from dexndm.deploy.emulator import DynamixelEmulator
from dexndm.deploy.leap_hand import LeapHand, LeapHandConfig, ticks_to_rad
from dexndm.deploy.sim_hand import SimHand, SimHandConfig
from dexndm.hand import constants as hc


@dataclass
class EmulatedHandConfig:
    """The simulated hand behind the emulator, and the LEAP driver's bus/motor settings.

    ``leap.port`` is ignored (the emulator's pty is used); ``leap.baudrate`` is also the
    wire speed the emulator charges for every packet. The emulator is a thread of this
    process, so on a loaded machine it can answer later than a motor would:
    ``reply_timeout_ms`` is the driver's reply timeout here (the SDK's ~34 ms suits motors).
    """

    sim: SimHandConfig = field(default_factory=SimHandConfig)
    leap: LeapHandConfig = field(default_factory=LeapHandConfig)
    emulate_wire_time: bool = True
    reply_timeout_ms: float = 1000.0

    def __post_init__(self) -> None:
        if isinstance(self.sim, dict):
            self.sim = SimHandConfig(**self.sim)
        if isinstance(self.leap, dict):
            self.leap = LeapHandConfig(**self.leap)
        self.validate()

    def validate(self) -> None:
        self.sim.validate()
        self.leap.validate()
        t = self.reply_timeout_ms
        if not (isinstance(t, (int, float)) and 0 <= t <= 5000):
            raise ValueError(f"emulated hand: reply_timeout_ms must be in [0, 5000] (0: the SDK's), got {t!r}")


class EmulatedHand:
    """LeapHand over the emulator over a SimHand; the LeapHand interface, lockstep time."""

    realtime = False

    def __init__(self, config: EmulatedHandConfig) -> None:
        config.validate()
        self.config = config
        # The motors execute goals as written: the driver above clamps, the physics does not.
        self.sim = SimHand(SimHandConfig(**{**config.sim.__dict__, "quantize": False, "max_step_rad": np.inf}))
        self.emulator: DynamixelEmulator | None = None
        self.leap: LeapHand | None = None
        self._executed = threading.Event()      # set by the emulator once a goal write is handled

    # ---- lifecycle -------------------------------------------------------------------
    def connect(self) -> None:
        """Build the simulated hand, start the emulator on its pty, connect the driver to it."""
        self.sim.connect()
        self.emulator = DynamixelEmulator(
            ids=range(hc.NUM_JOINTS), initial_position=2048, state_provider=self._state,
            on_sync_goal=self._on_goals, baudrate=self.config.leap.baudrate if self.config.emulate_wire_time else None)
        leap_cfg = LeapHandConfig(**{**self.config.leap.__dict__, "port": self.emulator.port,
                                     "min_reply_timeout_ms": self.config.reply_timeout_ms})
        self.leap = LeapHand(leap_cfg)
        self.leap.connect()

    def close(self) -> None:
        try:
            if self.leap is not None:
                self.leap.close()
        finally:
            if self.emulator is not None:
                self.emulator.close()
            self.sim.close()
            self.leap = self.emulator = None

    def __enter__(self) -> EmulatedHand:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- emulator hooks (run on the emulator's thread, under its lock) -------------------
    def _state(self) -> dict[int, dict[str, int]]:
        regs = self.sim.raw_joint_ticks()
        return {i: {name: int(v[i]) for name, v in regs.items()} for i in range(hc.NUM_JOINTS)}

    def _on_goals(self, goals: dict[int, int]) -> None:
        try:
            motors = self.emulator.motors
            if len(goals) != hc.NUM_JOINTS or not all(m.torque_on for m in motors.values()):
                return      # a partial write or torque off (e.g. during connect): the physics does not advance
            ticks = np.array([goals[i] for i in range(hc.NUM_JOINTS)])
            self.sim.command(ticks_to_rad(ticks))
        finally:
            self._executed.set()

    # ---- the hand interface (delegated to the real driver) ------------------------------
    def _driver(self) -> LeapHand:
        if self.leap is None:
            raise RuntimeError("EmulatedHand is not connected; call connect() first")
        return self.leap

    @property
    def last_command(self) -> np.ndarray | None:
        return None if self.leap is None else self.leap.last_command

    @property
    def bus(self):
        return self._driver().bus

    def read(self) -> dict[str, np.ndarray]:
        return self._driver().read()

    def clamp(self, q_target: np.ndarray) -> np.ndarray:
        return self._driver().clamp(q_target)

    def command(self, q_target: np.ndarray) -> np.ndarray:
        """Send through the real driver, then wait until the emulated motors have executed the tick:
        the physics step is the emulation's cost, not the bus's, so the next read is not charged
        for it (a real hand moves while the bus is idle)."""
        self._executed.clear()
        sent = self._driver().command(q_target)
        if not self._executed.wait(timeout=5.0):
            raise BusError("emulated hand: the emulator did not execute the goal write within 5 s")
        return sent

    def disable(self) -> None:
        self._driver().disable()

    def hardware_error_status(self, dxl_id: int) -> int:
        return self._driver().hardware_error_status(dxl_id)

    def start_target(self) -> np.ndarray:
        return self.sim.start_target()

    def describe(self) -> dict[str, Any]:
        d = self.sim.describe()
        d["sim_hand"] = dict(self.config.sim.__dict__)     # as configured (the inner copy has no step bound)
        d["emulated_bus"] = {"baudrate": self.config.leap.baudrate, "leap": dict(self.config.leap.__dict__)}
        return d

    def object_pose(self) -> np.ndarray:
        return self.sim.object_pose()

    @property
    def gravity_dir(self) -> np.ndarray:
        return self.sim.gravity_dir

    def metrics(self) -> dict[str, Any]:
        """The simulated hand's metrics, after one read round trip so every sent goal has been executed."""
        if self.leap is not None:
            try:
                self.leap.read()
            except BusError:
                pass
        return self.sim.metrics()
