"""The 20 Hz deploy loop: read the hand, update the history, run base + residual, clamp, send
(DexNDM Sec. 3.3-3.4 and 4.4: the base policy plus the residual run on the real hand, the
rotation axis optionally steered live by an operator).

Per tick (``1 / CONTROL_RATE_HZ``)::

    q_t      = hand.read()                        one sync read (position/velocity/current)
    history  <- (q_t, a_{t-1})                    DeployObservation: the layout built in one place
    a_t, c_t = policy(obs_t, q_t, a_{t-1})        bundle: chain target a_t, command c_t = a_t + residual
    sent_t   = hand.command(c_t)                  clamped to limits and max step; returns what was sent
    record (q_t, sent_t, ...)                     HDF5 segments in the dataset schema

Safety (every stop is a :class:`LoopReport` ``reason`` with a ``message``):

* non-finite or huge policy outputs: the chain target falls back to a_{t-1}, the command
  is clamped by the hand (NaN holds the last command), so nothing outside the limits or
  beyond ``max_step_rad`` per tick is ever sent;
* ``watchdog``: a tick that stalls past ``watchdog_s`` sends nothing more;
* ``sigint`` / ``stop`` (operator) -> ``stop_action``; ``estop`` -> ``estop_action``
  (``ramp`` to ``safe_pose`` within the step bound, ``disable`` torque, or ``hold``);
* ``bus_errors``: ``max_bus_errors`` consecutive failed ticks -> hold and stop;
* ``hardware_error``: a motor with the alert bit stops the loop at once, named.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dexndm.deploy.bus import BusError, HardwareError, read_hardware_error
from dexndm.deploy.commands import CommandSource, parse_axis
from dexndm.deploy.recorder import SegmentRecorder
from dexndm.deploy.safety import TickStats, Watchdog, ramp
from dexndm.hand import constants as hc
from dexndm.sim import orientations as ori
from dexndm.sim.control import ACTION_SCALE, CONTROL_RATE_HZ
from dexndm.sim.observations import DeployObservation

Policy = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
STOP_ACTIONS = ("ramp", "disable", "hold")


@dataclass
class LoopConfig:
    """Typed loop settings (Hydra ``loop`` node); :meth:`validate` runs at construction."""

    duration_s: float = 10.0          # policy time; <= 0: until stopped
    axis: Any = "+z"                  # initial rotation axis: +z, -x, ... or [x, y, z]
    wrist: str = "palm_up"            # wrist orientation fed to the policy (gravity in hand frame)
    start_pose: Any = "hand"          # hand (sim: the grasp; leap: canonical) | current | canonical | [16]
    realtime: Any = "auto"            # auto: pace to 20 Hz if the hand runs in real time
    watchdog_s: float = 0.25
    max_bus_errors: int = 3           # consecutive failed ticks before hold-and-stop
    stop_action: str = "ramp"         # on SIGINT / operator stop
    estop_action: str = "disable"     # on e-stop
    safe_pose: Any = "canonical"      # ramp goal: canonical | start | [16]
    disable_after_ramp: bool = False
    handle_sigint: bool = True
    keep_trace: bool = True           # keep every sent command and read q in memory (tests, plots)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        errs = []
        for name in ("stop_action", "estop_action"):
            if getattr(self, name) not in STOP_ACTIONS:
                errs.append(f"{name} must be one of {STOP_ACTIONS}, got {getattr(self, name)!r}")
        if self.wrist not in ori.NAMED_ORIENTATIONS:
            errs.append(f"wrist must be one of {ori.NAMED_ORIENTATIONS}, got {self.wrist!r}")
        try:
            parse_axis(self.axis)
        except (ValueError, TypeError) as e:
            errs.append(f"axis: {e}")
        if not self.watchdog_s > 0:
            errs.append(f"watchdog_s must be positive, got {self.watchdog_s}")
        if not (isinstance(self.max_bus_errors, int) and self.max_bus_errors >= 1):
            errs.append(f"max_bus_errors must be an int >= 1, got {self.max_bus_errors!r}")
        if self.realtime not in ("auto", True, False):
            errs.append(f"realtime must be auto, true or false, got {self.realtime!r}")
        for name in ("start_pose", "safe_pose"):
            v = getattr(self, name)
            if not isinstance(v, str) and np.shape(v) != (hc.NUM_JOINTS,):
                errs.append(f"{name} must be a name or {hc.NUM_JOINTS} joint angles, got {v!r}")
        if errs:
            raise ValueError("invalid LoopConfig: " + "; ".join(errs))


@dataclass
class LoopReport:
    """How a run ended and what it did."""

    reason: str                        # duration | stop | sigint | estop | watchdog | bus_errors | hardware_error
    message: str
    ticks: int = 0                     # policy ticks whose command was sent
    bus_errors: int = 0                # failed ticks in total
    motor: int | None = None           # the motor named by a bus/hardware error
    timing: dict[str, float] = field(default_factory=dict)
    segments: int = 0
    sent: list[np.ndarray] = field(default_factory=list)      # every command sent (start ramp, policy, stop)
    q: list[np.ndarray] = field(default_factory=list)         # every successful read
    axis_changes: int = 0

    @property
    def clean(self) -> bool:
        return self.reason in ("duration", "stop", "sigint", "estop")


class DeployLoop:
    """Run ``policy`` on ``hand`` at the control rate; :meth:`run` returns a :class:`LoopReport`."""

    def __init__(self, hand: Any, policy: Policy, config: LoopConfig, *, history: int = 10,
                 recorder: SegmentRecorder | None = None, commands: CommandSource | None = None,
                 on_tick: Callable[[DeployLoop, int], None] | None = None,   # (loop, iteration): hooks, tests
                 rate_hz: float = CONTROL_RATE_HZ, action_scale: float = ACTION_SCALE) -> None:
        config.validate()
        self.hand, self.policy, self.cfg = hand, policy, config
        self.recorder = recorder or SegmentRecorder(None)
        self.commands = commands or CommandSource()
        self.on_tick = on_tick
        self.period = 1.0 / rate_hz
        self.action_scale = float(action_scale)      # only to record the relative action of each tick
        self.obs = DeployObservation(1, history)
        self.axis = parse_axis(config.axis)
        self.gravity = ori.gravity_directions(config.wrist)[0]
        self.wrist_quat = ori.orientation_quat(self.gravity)[None]
        hand_g = getattr(hand, "gravity_dir", None)
        if hand_g is not None and not np.allclose(hand_g, self.gravity, atol=1e-6):
            raise ValueError(f"the simulated hand's wrist (gravity {np.round(hand_g, 3).tolist()}) differs from "
                             f"loop.wrist={config.wrist!r}; set both to the same orientation")
        self._request: str | None = None
        self.report = LoopReport("running", "")

    # ---- control -----------------------------------------------------------------------
    def request_stop(self, reason: str = "stop") -> None:
        """Ask the loop to stop at the next tick (``stop``, ``estop`` or ``sigint``); thread-safe."""
        if self._request is None or reason == "estop":
            self._request = reason

    def _pose(self, spec: Any, start: np.ndarray) -> np.ndarray:
        if isinstance(spec, str):
            if spec == "hand":
                return np.asarray(self.hand.start_target(), float)
            if spec == "current":
                return np.asarray(self.hand.last_command, float)
            if spec == "canonical":
                return hc.clamp_to_limits(np.asarray(hc.CANONICAL_POSE, float))
            if spec == "start":
                return np.asarray(start, float)
            raise ValueError(f"unknown pose {spec!r}; use hand, current, canonical, start or 16 angles")
        return hc.clamp_to_limits(np.asarray(spec, float))

    def _send(self, target: np.ndarray) -> np.ndarray:
        sent = self.hand.command(target)
        if self.cfg.keep_trace:
            self.report.sent.append(np.asarray(sent, float).copy())
        return sent

    def _read(self) -> np.ndarray:
        q = np.asarray(self.hand.read()["q"], float)
        if self.cfg.keep_trace:
            self.report.q.append(q.copy())
        return q

    def _pace(self, t_next: float, realtime: bool) -> tuple[float, float | None]:
        if not realtime:
            return time.perf_counter(), None
        now = time.perf_counter()
        if t_next > now:
            time.sleep(t_next - now)
        now = time.perf_counter()
        return now, now - t_next

    def _max_step(self) -> float:
        cfg = getattr(self.hand, "config", None)
        step = getattr(cfg, "max_step_rad", None) or getattr(getattr(cfg, "leap", None), "max_step_rad", 0.25)
        return float(step)

    # ---- the run -------------------------------------------------------------------------
    def run(self) -> LoopReport:
        """Start ramp, policy ticks until the duration or a stop, then the stop action."""
        cfg, hand, rep = self.cfg, self.hand, self.report
        realtime = hand.realtime if cfg.realtime == "auto" else bool(cfg.realtime)
        stats = TickStats(self.period)
        wd = Watchdog(cfg.watchdog_s, on_trip=lambda s: print(f"[deploy] watchdog: loop stalled {s * 1e3:.0f} ms; "
                                                                "no further commands will be sent"))
        old_handler = None
        if cfg.handle_sigint and threading.current_thread() is threading.main_thread():
            old_handler = signal.signal(signal.SIGINT, lambda *_: self.request_stop("sigint"))
        n_ticks = int(round(cfg.duration_s / self.period)) if cfg.duration_s > 0 else None
        try:
            start = self._start = self._pose(cfg.start_pose, np.asarray(hand.last_command, float))
            t_next = time.perf_counter()
            for pose in ramp(hand.last_command, start, self._max_step()):
                t_next += self.period
                self._pace(t_next, realtime)
                self._send(pose)
            prev_target = np.asarray(hand.last_command, float).copy()
            q = self._read()
            self.obs.reset(np.array([0]), q[None], prev_target[None])
            for _ in range(3):      # TorchScript optimises on its first calls: not inside a tick
                self._infer(q, prev_target)
            self.recorder.begin(q, prev_target, self.axis, self.gravity, hand.object_pose())
            last_sent, last_action, broken, errors, first = None, None, False, 0, None
            wd.start()
            t_next = time.perf_counter()
            tick = iteration = 0
            while n_ticks is None or tick < n_ticks:
                if self.on_tick is not None:
                    self.on_tick(self, iteration)     # every iteration, failed ticks included
                iteration += 1
                self._poll_commands(q, prev_target)
                if self._request is not None:
                    rep.reason = self._request
                    break
                t_next += self.period
                t0, jitter = self._pace(t_next, realtime)
                if realtime and jitter is not None and jitter > self.period:
                    t_next = t0            # fell a whole period behind: re-anchor, do not burst
                wd.kick()
                if last_sent is not None or broken:
                    try:
                        q = self._read()
                    except HardwareError as e:
                        self._hardware_error(e)
                        break
                    except BusError as e:
                        errors += 1
                        rep.bus_errors += 1
                        first = e if errors == 1 else first
                        self._flush()
                        if not broken:
                            self.recorder.end(True, self._params(stats))
                            broken = True
                        if errors >= cfg.max_bus_errors:
                            # The first failure of the run names the culprit: later ones can be its echoes
                            # (a late reply landing in the next transaction).
                            rep.reason, rep.motor = "bus_errors", first.dxl_id
                            who = f"motor {first.dxl_id}" if first.dxl_id is not None else "the port"
                            rep.message = (f"{errors} consecutive bus errors, first from {who}: {first}; last: {e}. "
                                           f"Holding position and stopping; check the cable, power and {who}")
                            break
                        continue
                    errors = 0
                    if broken:
                        self.recorder.begin(q, hand.last_command, self.axis, self.gravity, hand.object_pose())
                        broken = False
                    else:
                        self.recorder.add(last_sent, last_action, q, hand.object_pose())
                    self.obs.push(q[None], prev_target[None])
                t1 = time.perf_counter()
                target, command = self._infer(q, prev_target)
                t2 = time.perf_counter()
                if wd.check():
                    rep.reason = "watchdog"
                    rep.message = (f"the loop stalled for {wd.stalled_s * 1e3:.0f} ms (> watchdog_s "
                                   f"{cfg.watchdog_s * 1e3:.0f} ms); the stale command was not sent")
                    break
                try:
                    last_sent = self._send(command)
                except BusError as e:      # the port itself failed (sync writes get no replies)
                    errors += 1
                    rep.bus_errors += 1
                    if errors >= cfg.max_bus_errors:
                        rep.reason, rep.motor, rep.message = "bus_errors", e.dxl_id, f"cannot send: {e}"
                        break
                    continue
                t3 = time.perf_counter()
                last_action = (target - prev_target) / self.action_scale
                prev_target = target
                tick += 1
                rep.ticks = tick
                stats.add(t1 - t0, t2 - t1, t3 - t2, t3 - t0, jitter)
            else:
                rep.reason = "duration"
            self._finish(rep, last_sent, last_action, stats, wd)
        finally:
            wd.stop()
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
            self.commands.close()
        rep.timing = stats.summary()
        rep.segments = self.recorder.segments_written
        return rep

    # ---- pieces ------------------------------------------------------------------------------
    def _infer(self, q: np.ndarray, prev_target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(chain target, command) [16] each; a non-finite chain falls back to ``prev_target``."""
        obs = self.obs.build(self.wrist_quat, self.axis[None])
        with torch.no_grad():
            target, command = self.policy(torch.from_numpy(obs), torch.from_numpy(q[None].astype(np.float32)),
                                          torch.from_numpy(prev_target[None].astype(np.float32)))
        target = target.reshape(-1).double().numpy()
        command = command.reshape(-1).double().numpy()
        target = hc.clamp_to_limits(np.where(np.isfinite(target), target, prev_target))
        return target, command        # the hand clamps the command (limits, step; NaN holds)

    def _poll_commands(self, q: np.ndarray, prev_target: np.ndarray) -> None:
        for c in self.commands.poll():
            if c.kind == "axis":
                axis = np.asarray(c.axis, float)
                if not np.allclose(axis, self.axis):
                    self.axis = axis
                    self.report.axis_changes += 1
                    if self.recorder.open:      # the schema holds one axis per trajectory
                        self.recorder.end(True)
                        self.recorder.begin(q, self.hand.last_command, self.axis, self.gravity,
                                            self.hand.object_pose())
                    print(f"[deploy] rotation axis -> {np.round(axis, 3).tolist()}")
            else:
                self.request_stop(c.kind)

    def _flush(self) -> None:
        """Drop stale bytes (a late reply) so the next transaction starts clean."""
        ph = getattr(getattr(self.hand, "bus", None), "port_handler", None)
        if ph is not None:
            ph.clearPort()

    def _params(self, stats: TickStats) -> dict[str, Any]:
        return {"deploy": True, "bus_errors": self.report.bus_errors, "overruns": stats.overruns}

    def _hardware_error(self, e: HardwareError) -> None:
        rep = self.report
        rep.reason, rep.motor = "hardware_error", e.dxl_id
        what = read_hardware_error(self.hand, e.dxl_id)
        rep.message = (f"motor {e.dxl_id} reports a hardware error: {what}. Its torque is off; the loop stopped. "
                       "Check load, temperature and supply voltage, then reboot the motor (power-cycle the hand)")

    def _finish(self, rep: LoopReport, last_sent, last_action, stats: TickStats, wd: Watchdog) -> None:
        """Close the last transition and the recording, then the stop action for ``rep.reason``."""
        if rep.reason in ("duration", "stop", "sigint", "estop") and last_sent is not None:
            try:
                q = self._read()
                self.recorder.add(last_sent, last_action, q, self.hand.object_pose())
            except BusError:
                pass
        self.recorder.end(rep.clean, self._params(stats))
        action = {"duration": "hold", "stop": self.cfg.stop_action, "sigint": self.cfg.stop_action,
                  "estop": self.cfg.estop_action, "bus_errors": "hold", "hardware_error": "hold",
                  "watchdog": "none"}[rep.reason]
        if not rep.message:
            rep.message = {"duration": f"ran {rep.ticks} ticks", "stop": "stopped by the operator",
                           "sigint": "interrupted (SIGINT)", "estop": "emergency stop"}[rep.reason]
        rep.message += f"; stop action: {action}"
        try:
            if action == "hold" and self.hand.last_command is not None:
                self._send(self.hand.last_command)
            elif action == "disable":
                self.hand.disable()
            elif action == "ramp":
                start = np.asarray(self.hand.last_command, float)
                goal = self._pose(self.cfg.safe_pose, getattr(self, "_start", start))
                for pose in ramp(start, goal, self._max_step()):
                    self._send(pose)
                    if self.hand.realtime:
                        time.sleep(self.period)
                if self.cfg.disable_after_ramp:
                    self.hand.disable()
        except BusError as e:
            rep.message += f" (failed: {e})"
