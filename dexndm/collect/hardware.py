"""Target-domain collection on ONE hand through the hand interface (DexNDM Sec. 3.3, Appendix C).

``dexndm collect chaos_box|free_hand|base_waves --hand sim|emulated|leap`` drives a single
hand (:func:`dexndm.deploy.hands.make_hand`) with the sequences the batched simulator
strategies replay (:mod:`dexndm.collect.strategies`), and writes the same HDF5 schema and
fields, so data from a real LEAP hand and from a simulated target domain are
interchangeable for dynamics fine-tuning (Sec. 3.4).

* **Same sequences.**  Episode plans come from the very functions the sim strategies use
  (``SourceSequences`` + ``noisy_replay``: with probability ``noise_prob`` Gaussian noise of
  ``noise_std`` on every target of an episode; ``sample_wave_spec`` + ``wave_targets`` for
  base waves), drawn from the same random stream (seeded by ``(seed, episodes already in
  the file)``), so with the same seed episode k replays the same source sequence, noise
  draw or wave as episode k of a batched sim collection.
* **No simulated balls.**  On a real hand the Chaos Box is a physical box of balls around
  the hand; this path never simulates balls (``num_balls`` is recorded as 0 for simulated
  hands and None for the real one).  ``chaos_box`` and ``free_hand`` differ here only in
  the label, which says whether the physical box was there.  A ``sim``/``emulated`` hand
  is a :class:`~dexndm.deploy.sim_hand.SimHand`, which keeps its grasped object (the hand
  interface has no object-free sim hand); use those to test the hardware path, and the
  batched simulator for simulated data.
* **Same safety as deploy** (:mod:`dexndm.deploy.loop`): every command goes through the
  hand's clamp (joint limits, ``max_step_rad`` per tick, NaN holds), before each episode a
  ramp at most ``max_step_rad`` per tick to the episode's initial target, then
  ``settle_ticks`` holding it; realtime hands are paced at 20 Hz (re-anchored, never
  bursting, when a tick runs a period late); SIGINT discards the episode in progress and
  stops; a bus error discards the episode in progress, ``max_bus_errors`` consecutive
  failed transactions stop (hold), and a motor's hardware-error alert stops at once; both
  name the motor.  Finished episodes are already durable (``TrajectoryWriter``).

Per tick: ``q_t = read()`` then ``sent_t = command(target_t)``; ``q_{t+1}`` is read one
tick later.  Recorded per episode: q [T+1, 16] (measured), target [T, 16] (what was
actually sent: clamped, and on a Dynamixel bus rounded to encoder ticks), initial_target
[16] (the command held before the first step), gravity_dir [3] (the wrist's), axis =
[0, 0, 1] (placeholder), success = True, params as the sim strategies plus ``hand``,
``step_limited_ticks`` (ticks where the step bound changed the plan) and ``late_ticks``.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from dexndm.collect.progress import CollectProgress
from dexndm.collect.sources import SourceSequences
from dexndm.files import file_sha256
from dexndm.collect.strategies import (MID_RANGE, PLACEHOLDER_AXIS, _single_gravity, noisy_replay, sample_wave_spec,
                                       wave_targets)
from dexndm.data.writer import TrajectoryWriter
from dexndm.deploy.bus import BusError, HardwareError, read_hardware_error
from dexndm.deploy.emulated_hand import EmulatedHand
from dexndm.deploy.hands import HandSpec, make_hand
from dexndm.deploy.leap_hand import RAD_PER_TICK, LeapHand
from dexndm.deploy.sim_hand import SimHand
from dexndm.deploy.safety import ramp
from dexndm.sim import orientations as ori
from dexndm.sim.control import CONTROL_RATE_HZ

HAND_STRATEGIES: tuple[str, ...] = ("chaos_box", "free_hand", "base_waves")
STOP_REASONS = ("done", "sigint", "bus_errors", "hardware_error")
#: A sent target further than this from the plan was changed by the step bound (not just rounding).
PLAN_TOLERANCE = RAD_PER_TICK / 2 + 1e-6

OnTick = Callable[["HandCollector", int], None]


class _Abort(Exception):
    """The episode in progress cannot be completed (a bus error, a stop request)."""


def plan_episode(strategy: str, sources: SourceSequences | None, episode_steps: int, noise_prob: float,
                 noise_std: float, dt: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """(planned targets [T, 16], initial target [16], params) of one episode, drawn as the batched
    strategies draw it (``strategies._run_batch``), so the same seed plans the same episodes."""
    params: dict[str, Any] = {"strategy": strategy}
    if sources is not None:
        seq = sources.sample(rng)
        target, noisy = noisy_replay(seq.target[:episode_steps], noise_prob, noise_std, rng)
        params.update(noisy=noisy, source_index=seq.index, noise_std=noise_std if noisy else 0.0)
        return target, seq.initial_target, params
    spec = sample_wave_spec(rng)
    target = wave_targets(spec, episode_steps, dt, rng)
    params.update(asdict(spec), noisy=spec.wave == "noisy_square")
    return target, MID_RANGE.copy(), params


def _max_step(hand: Any) -> float:
    """The hand's per-tick step bound (SimHand/LeapHand ``config.max_step_rad``, EmulatedHand ``config.leap``)."""
    cfg = getattr(hand, "config", None)
    step = getattr(cfg, "max_step_rad", None) or getattr(getattr(cfg, "leap", None), "max_step_rad", None)
    if step is None:
        raise ValueError(f"{type(hand).__name__} has no config.max_step_rad: cannot bound the ramp")
    return float(step)


class HandCollector:
    """Runs episodes on a connected ``hand``; :meth:`episode` returns a trajectory dict or None.

    ``stop_reason`` is set (one of :data:`STOP_REASONS` but "done") when the collection must
    stop; ``message`` and ``motor`` then say why.  ``sent`` keeps every command sent
    (ramps included) when ``keep_trace``.
    """

    def __init__(self, hand: Any, gravity_dir: np.ndarray, *, settle_ticks: int = 10, max_bus_errors: int = 3,
                 realtime: Any = "auto", on_tick: OnTick | None = None, keep_trace: bool = False) -> None:
        if settle_ticks < 0 or max_bus_errors < 1:
            raise ValueError(f"need settle_ticks >= 0 and max_bus_errors >= 1, got {settle_ticks}, {max_bus_errors}")
        if realtime not in ("auto", True, False):
            raise ValueError(f"realtime must be auto, true or false, got {realtime!r}")
        self.hand, self.gravity_dir = hand, np.asarray(gravity_dir, np.float32)
        self.settle_ticks, self.max_bus_errors = int(settle_ticks), int(max_bus_errors)
        self.realtime = bool(hand.realtime) if realtime == "auto" else bool(realtime)
        self.period = 1.0 / CONTROL_RATE_HZ
        self.max_step = _max_step(hand)
        self.on_tick, self.keep_trace = on_tick, keep_trace
        self.sent: list[np.ndarray] = []
        self.stop_reason: str | None = None
        self.message, self.motor = "", None
        self.bus_errors = self._consecutive = 0
        self.aborted = 0
        self._t_next = time.perf_counter()
        self._late, self._episode_tick = 0, -1

    # ---- stops ---------------------------------------------------------------------------
    def request_stop(self, reason: str = "sigint") -> None:
        """Stop at the next tick, discarding the episode in progress (thread- and signal-safe)."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.message = (f"stopped ({reason}); the episode in progress was discarded, "
                            "the file holds every finished one")

    def _bus_error(self, e: BusError) -> NoReturn:
        self.bus_errors += 1
        self._consecutive += 1
        ph = getattr(getattr(self.hand, "bus", None), "port_handler", None)
        if ph is not None:
            ph.clearPort()            # drop a late reply so the next transaction starts clean
        if self._consecutive >= self.max_bus_errors and self.stop_reason is None:
            who = f"motor {e.dxl_id}" if e.dxl_id is not None else "the port"
            self.stop_reason, self.motor = "bus_errors", e.dxl_id
            self.message = (f"{self._consecutive} consecutive failed bus transactions, last on {who}: {e}. "
                            f"Check {who}'s cable and power, then run the same command again to continue the file")
        raise _Abort from e

    def _hardware_error(self, e: HardwareError) -> NoReturn:
        self.stop_reason, self.motor = "hardware_error", e.dxl_id
        what = read_hardware_error(self.hand, e.dxl_id)
        self.message = (f"motor {e.dxl_id} reports a hardware error: {what}. Its torque is off; collection "
                        "stopped. Check load, temperature and supply voltage, power-cycle the hand, then run the "
                        "same command again to continue the file")
        raise _Abort from e

    # ---- one tick ------------------------------------------------------------------------
    def _pace(self) -> None:
        """Wait for the next 20 Hz tick boundary (realtime hands only)."""
        if self.on_tick is not None:
            self.on_tick(self, self._episode_tick)
        if self.stop_reason is not None:
            raise _Abort
        if not self.realtime:
            return
        self._t_next += self.period
        now = time.perf_counter()
        if self._t_next > now:
            time.sleep(self._t_next - now)
        elif now - self._t_next > self.period:   # a whole period behind: re-anchor, do not burst
            self._t_next = now
        if time.perf_counter() - self._t_next > self.period / 2:
            self._late += 1

    def _io(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except HardwareError as e:
            self._hardware_error(e)
        except BusError as e:
            self._bus_error(e)

    def _send(self, target: np.ndarray) -> np.ndarray:
        sent = np.asarray(self._io(lambda: self.hand.command(target)), float)
        if self.keep_trace:
            self.sent.append(sent.copy())
        return sent

    def _read(self) -> np.ndarray:
        q = np.asarray(self._io(lambda: self.hand.read()["q"]), float)
        self._consecutive = 0        # only a read proves the motors answer (a sync write gets no reply)
        return q

    # ---- one episode ---------------------------------------------------------------------
    def episode(self, target: np.ndarray, initial: np.ndarray, params: Mapping[str, Any]) -> dict | None:
        """Ramp to ``initial`` [16], settle, then send ``target`` [T, 16] tick by tick; the trajectory
        (schema fields) or None if it was aborted (see ``stop_reason``)."""
        self._t_next, self._late, self._episode_tick = time.perf_counter(), 0, -1
        try:
            for pose in ramp(self.hand.last_command, initial, self.max_step):
                self._pace()
                self._send(pose)
            for _ in range(self.settle_ticks):
                self._pace()
                self._send(initial)
            held = np.asarray(self.hand.last_command, float).copy()
            T = len(target)
            q, sent = np.empty((T + 1, len(held))), np.empty((T, len(held)))
            for t in range(T):
                self._episode_tick = t
                self._pace()
                q[t] = self._read()
                sent[t] = self._send(target[t])
            self._episode_tick = T
            self._pace()
            q[T] = self._read()
        except _Abort:
            self.aborted += 1
            return None
        limited = int((np.abs(sent - target) > PLAN_TOLERANCE).any(axis=1).sum())
        return {"q": q.astype(np.float32), "target": sent.astype(np.float32),
                "initial_target": held.astype(np.float32), "axis": PLACEHOLDER_AXIS,
                "gravity_dir": self.gravity_dir, "success": True,
                "params": {**params, "step_limited_ticks": limited, "late_ticks": self._late}}

    def hold(self) -> None:
        """Stop action: re-send the last command (best effort; motors hold their goal anyway)."""
        try:
            if self.hand.last_command is not None:
                self.hand.command(self.hand.last_command)
        except BusError:
            pass


def _resolve_hand(hand: Any, wrist: Any) -> tuple[Any, bool, str]:
    """(hand, owned, kind): a connected hand object is used as given; a spec is built with the
    collection's wrist on its simulated part (a SimHand needs a named orientation)."""
    if hasattr(hand, "command"):
        kinds = {SimHand: "sim", EmulatedHand: "emulated", LeapHand: "leap"}
        return hand, False, next((k for cls, k in kinds.items() if isinstance(hand, cls)), type(hand).__name__)
    spec = hand if isinstance(hand, HandSpec) else HandSpec.from_dict(hand)
    if spec.kind != "leap":
        if not (isinstance(wrist, str) and wrist in ori.NAMED_ORIENTATIONS):
            raise ValueError(f"a {spec.kind} hand needs a named wrist orientation {ori.NAMED_ORIENTATIONS}, "
                             f"got {wrist!r}")
        spec = dataclasses.replace(spec, sim=dataclasses.replace(spec.sim, wrist=wrist))
    return make_hand(spec), True, spec.kind


def collect_on_hand(strategy: str, *, out: str | Path, episodes: int, hand: Any, source_file: str | Path | None = None,
                    wrist: Any = "palm_down", episode_steps: int = 400, noise_prob: float = 0.5,
                    noise_std: float = 0.01, seed: int = 0, settle_ticks: int = 10, max_bus_errors: int = 3,
                    realtime: Any = "auto", handle_sigint: bool = True, progress: Any = "auto",
                    on_tick: OnTick | None = None, keep_trace: bool = False) -> dict:
    """Collect on one hand until ``out`` holds ``episodes`` episodes of ``strategy`` or a stop; a summary.

    ``hand``: a :class:`HandSpec` or mapping (``{"kind": "leap", "leap": {"port": ...}}``), built,
    connected and closed here; or a connected hand object, used as given.  The summary's
    ``reason`` is ``done``, ``sigint``, ``bus_errors`` or ``hardware_error`` (with ``message`` and
    ``motor``).  ``on_tick(collector, t)`` runs before every tick (t = episode tick, -1 in the
    ramp); ``keep_trace`` keeps every sent command in ``summary["sent"]`` [N, 16] (tests).
    """
    if strategy not in HAND_STRATEGIES:
        raise ValueError(f"strategy {strategy!r} cannot run on a hand; use one of {HAND_STRATEGIES} "
                         "(task_aware runs the policy in simulation)")
    if episodes < 0 or episode_steps < 1:
        raise ValueError(f"need episodes >= 0 and episode_steps >= 1, got {episodes}, {episode_steps}")
    replay = strategy != "base_waves"
    if replay and source_file is None:
        raise ValueError(f"strategy {strategy!r} replays sim rollouts: give source_file (--source)")
    gravity = _single_gravity(wrist)
    hand_obj, owned, kind = _resolve_hand(hand, wrist)
    sources = SourceSequences(source_file, gravity) if replay else None
    num_balls = None if kind == "leap" and strategy == "chaos_box" else 0
    source = {"kind": "collection", "strategy": strategy, "hand": kind,
              "source_file_sha256": file_sha256(source_file) if replay else None}
    config = {"strategy": strategy, "hand": kind, "wrist": wrist if isinstance(wrist, str) else list(wrist),
              "episode_steps": episode_steps, "noise_prob": noise_prob, "noise_std": noise_std, "seed": seed,
              "num_balls": num_balls, "source_file": str(source_file) if replay else None,
              "settle_ticks": settle_ticks, "max_bus_errors": max_bus_errors}
    summary: dict[str, Any] = {"out": str(out), "strategy": strategy, "hand": kind, "written": 0, "aborted": 0,
                               "source_matched_wrist": sources.matched if sources else None}
    old_handler = None
    try:
        if owned:
            hand_obj.connect()
        hand_g = getattr(hand_obj, "gravity_dir", None)
        if hand_g is not None and not np.allclose(hand_g, gravity, atol=1e-6):
            raise ValueError(f"the simulated hand's wrist (gravity {np.round(hand_g, 3).tolist()}) differs from "
                             f"wrist={wrist!r}; set both to the same orientation")
        config["max_step_rad"] = _max_step(hand_obj)
        with TrajectoryWriter(out, domain=hand_obj.describe(), source=source, config=config,
                              control_rate_hz=CONTROL_RATE_HZ) as writer:
            existing = len(writer)
            summary["existing"] = existing
            rng = np.random.default_rng([seed, existing])
            rng.integers(2 ** 31)                 # the batched path's env seed: keeps both streams in step
            runner = HandCollector(hand_obj, gravity, settle_ticks=settle_ticks, max_bus_errors=max_bus_errors,
                                   realtime=realtime, on_tick=on_tick, keep_trace=keep_trace)
            if handle_sigint and threading.current_thread() is threading.main_thread():
                old_handler = signal.signal(signal.SIGINT, lambda *_: runner.request_stop("sigint"))
            bar = CollectProgress(f"{strategy} ({kind} hand)", episodes, existing, progress)
            try:
                while len(writer) < episodes and runner.stop_reason is None:
                    target, initial, params = plan_episode(strategy, sources, episode_steps, noise_prob, noise_std,
                                                           1.0 / CONTROL_RATE_HZ, rng)
                    traj = runner.episode(target, initial, {**params, "num_balls": num_balls, "hand": kind})
                    if traj is not None:
                        writer.append(traj)
                        summary["written"] += 1
                    bar.update(len(writer), aborted=runner.aborted)
            finally:
                bar.close()
                if runner.stop_reason in ("bus_errors", "hardware_error"):
                    runner.hold()
            summary.update(episodes=len(writer), aborted=runner.aborted, bus_errors=runner.bus_errors,
                           reason=runner.stop_reason or "done", motor=runner.motor,
                           message=runner.message or f"{len(writer)} episodes in {out}")
            if keep_trace:
                summary["sent"] = np.array(runner.sent).reshape(-1, len(MID_RANGE))
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
        if sources is not None:
            sources.close()
        if owned:
            hand_obj.close()
    return summary


def hand_spec_from_args(kind: str, *, base: Mapping[str, Any] | None = None, domain: Any = None,
                        port: str | None = None, baudrate: int | None = None, max_step: float | None = None,
                        grasp_dir: str | None = None) -> HandSpec:
    """A :class:`HandSpec` of ``kind`` from an optional base mapping (a ``conf/hand/*.yaml``) and the
    CLI's overrides; each override is refused where that hand has no such part."""
    data = {k: dict(v) if isinstance(v, Mapping) else v for k, v in dict(base or {}).items()}
    if data.get("kind", kind) != kind:
        raise ValueError(f"--hand {kind} but the hand config says kind: {data['kind']}")
    data["kind"] = kind
    sim, leap = data.setdefault("sim", {}), data.setdefault("leap", {})
    if kind == "leap" and (domain is not None or grasp_dir is not None):
        raise ValueError("--domain/--grasp-dir describe a simulated hand; a real LEAP hand is its own domain")
    if kind != "leap" and port is not None:
        raise ValueError(f"--port is for --hand leap; a {kind} hand has no serial port to choose")
    for key, value in (("domain", domain), ("grasp_dir", grasp_dir)):
        if value is not None:
            sim[key] = value
    for key, value in (("port", port), ("baudrate", baudrate)):
        if value is not None:
            leap[key] = value
    if max_step is not None:
        if not (math.isfinite(max_step) and max_step > 0):
            raise ValueError(f"--max-step must be a positive number of radians, got {max_step}")
        sim["max_step_rad"] = leap["max_step_rad"] = float(max_step)
    return HandSpec.from_dict(data)
