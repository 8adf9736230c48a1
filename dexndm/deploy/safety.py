"""Safety and timing pieces of the control loop: watchdog, ramps, tick statistics.

* :class:`Watchdog` - a thread that trips when the loop has not kicked it for
  ``timeout_s`` (a stall: a hung inference, a blocked bus).  The loop checks it before
  every send and never sends a command computed before a stall; the thread also logs
  the stall the moment it happens (the bus belongs to the loop's thread, so the
  watchdog itself never touches it: Dynamixels hold their last goal on their own).
* :func:`ramp` - the commands that walk from one pose to another at most ``max_step`` rad
  per tick (the safe-stop ramp, and the start ramp into the grasp).
* :class:`TickStats` - per-tick latency (read, inference, send, total), jitter against
  the schedule and overruns of the period; p50/p99/max in milliseconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np


class Watchdog:
    """Trips when :meth:`kick` has not been called for ``timeout_s`` while armed."""

    def __init__(self, timeout_s: float, on_trip: Callable[[float], None] | None = None) -> None:
        if not timeout_s > 0:
            raise ValueError(f"watchdog timeout must be positive, got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self.on_trip = on_trip
        self.tripped = threading.Event()
        self.stalled_s = 0.0
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="deploy-watchdog", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        self._last = time.monotonic()

    def check(self) -> bool:
        """True if the loop stalled (now, or at any time since the start): do not send."""
        age = time.monotonic() - self._last
        if age > self.timeout_s and not self.tripped.is_set():
            self._trip(age)
        return self.tripped.is_set()

    def _trip(self, age: float) -> None:
        self.stalled_s = age
        self.tripped.set()
        if self.on_trip is not None:
            self.on_trip(age)

    def _run(self) -> None:
        period = min(self.timeout_s / 4, 0.05)
        while not self._stop.wait(period):
            if not self.tripped.is_set() and time.monotonic() - self._last > self.timeout_s:
                self._trip(time.monotonic() - self._last)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)


def ramp(start: np.ndarray, goal: np.ndarray, max_step: float) -> list[np.ndarray]:
    """Poses from ``start`` to ``goal`` ([16] each, excluding ``start``, ending at ``goal``), each at
    most ``max_step`` rad from the previous one on every joint; [] if already there."""
    start, goal = np.asarray(start, float), np.asarray(goal, float)
    dist = float(np.abs(goal - start).max())
    n = int(np.ceil(dist / max_step - 1e-9)) if dist > 0 else 0
    return [start + (goal - start) * (k / n) for k in range(1, n + 1)]


class TickStats:
    """Per-tick timings (seconds in, milliseconds out)."""

    PARTS = ("read", "inference", "send", "total")

    def __init__(self, period_s: float) -> None:
        self.period_s = float(period_s)
        self.samples: dict[str, list[float]] = {p: [] for p in self.PARTS}
        self.jitter: list[float] = []
        self.overruns = 0

    def add(self, read: float, inference: float, send: float, total: float, jitter: float | None = None) -> None:
        for name, v in zip(self.PARTS, (read, inference, send, total)):
            self.samples[name].append(v)
        if jitter is not None:
            self.jitter.append(jitter)
        if total > self.period_s:
            self.overruns += 1

    def summary(self) -> dict[str, float]:
        """``{part}_p50_ms``, ``{part}_p99_ms``, ``{part}_max_ms``, jitter, overrun count."""
        out: dict[str, float] = {"ticks": len(self.samples["total"]), "overruns": self.overruns}
        for name, vals in list(self.samples.items()) + [("jitter", self.jitter)]:
            if vals:
                a = np.asarray(vals) * 1e3
                out[f"{name}_p50_ms"] = float(np.percentile(a, 50))
                out[f"{name}_p99_ms"] = float(np.percentile(a, 99))
                out[f"{name}_max_ms"] = float(a.max())
        return out
