"""Deploy-loop latency: where a 20 Hz tick's time goes (goal: far inside the 50 ms budget).

A paper-size bundle (generalist: 1024 wide, 5 residual blocks, DexNDM A.1; residual
256 x 2) runs in :class:`~dexndm.deploy.loop.DeployLoop` on one CPU thread, driving a
``LeapHand`` over the real ``dynamixel_sdk`` against the pty emulator, which charges
every packet its wire time at the configured baud rate (4 Mbaud, return delay 0).  The
emulated motors follow their goals (no physics: a real hand's physics costs the loop
nothing), and the loop runs unpaced, so every figure is pure per-tick work.

``inference_p50_ms / inference_p99_ms``  observation build + bundle forward
``bus_read_p99_ms / bus_send_p99_ms``    one 16-motor sync read / goal sync write
``tick_p50_ms / tick_p99_ms``            read + inference + send
``inference_only_p99_ms``                the bundle alone, called back to back
Goals: ``inference_p99_ms`` < 2 and ``tick_p99_ms`` < 10 on one core.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dexndm.deploy.emulator import DynamixelEmulator
from dexndm.deploy.export import export_bundle, load_bundle
from dexndm.deploy.leap_hand import LeapHand, LeapHandConfig
from dexndm.deploy.loop import DeployLoop, LoopConfig
from dexndm.deploy.testing import write_tiny_checkpoints
from dexndm.hand import constants as hc

BAUDRATE = 4_000_000


class _BenchHand(LeapHand):
    """The LEAP driver, unpaced (``realtime=False``) and starting where it stands."""

    realtime = False

    def start_target(self) -> np.ndarray:
        return self.last_command.copy()


def _inference_only(bundle, n: int) -> np.ndarray:
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(1, bundle.layout.dim, generator=g)
    q = torch.as_tensor(hc.CANONICAL_POSE, dtype=torch.float32)[None]
    out = np.empty(n)
    with torch.no_grad():
        for _ in range(20):
            bundle(obs, q, q)
        for i in range(n):
            t = time.perf_counter()
            bundle(obs, q, q)
            out[i] = time.perf_counter() - t
    return out * 1e3


def run(quick: bool = False) -> dict:
    """Per-tick latency breakdown (ms) of the deploy loop at 4 Mbaud on one CPU thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ticks = 100 if quick else 600
    try:
        with tempfile.TemporaryDirectory() as tmp:
            gen, res = write_tiny_checkpoints(tmp, hidden=1024, blocks=5, res_hidden=256, res_depth=2)
            bundle = load_bundle(export_bundle(gen, Path(tmp) / "bundle", res))
            alone = _inference_only(bundle, ticks)
            with DynamixelEmulator(ids=range(hc.NUM_JOINTS), baudrate=BAUDRATE) as emu:
                hand = _BenchHand(LeapHandConfig(port=emu.port, baudrate=BAUDRATE))
                hand.connect()
                try:
                    cfg = LoopConfig(duration_s=ticks / 20.0, realtime=False, handle_sigint=False, keep_trace=False,
                                     watchdog_s=1.0)
                    rep = DeployLoop(hand, bundle, cfg, history=bundle.history).run()
                finally:
                    hand.close()
    finally:
        torch.set_num_threads(threads)
    t = rep.timing
    return {
        "ticks": rep.ticks, "baudrate": BAUDRATE, "torch_threads": 1,
        "inference_p50_ms": t["inference_p50_ms"], "inference_p99_ms": t["inference_p99_ms"],
        "inference_only_p50_ms": float(np.percentile(alone, 50)),
        "inference_only_p99_ms": float(np.percentile(alone, 99)),
        "bus_read_p50_ms": t["read_p50_ms"], "bus_read_p99_ms": t["read_p99_ms"],
        "bus_send_p50_ms": t["send_p50_ms"], "bus_send_p99_ms": t["send_p99_ms"],
        "tick_p50_ms": t["total_p50_ms"], "tick_p99_ms": t["total_p99_ms"], "tick_max_ms": t["total_max_ms"],
        "overruns": t["overruns"], "reason": rep.reason,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=1))
