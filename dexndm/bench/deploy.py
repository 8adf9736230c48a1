"""Deploy-loop latency: where a 20 Hz tick's time goes (goal: far inside the 50 ms budget).

A paper-size bundle (generalist: 1024 wide, 5 residual blocks, DexNDM A.1; residual
256 x 2) runs in :class:`~dexndm.deploy.loop.DeployLoop` on one CPU thread, driving a
``LeapHand`` over the real ``dynamixel_sdk`` against the pty emulator, which charges
every packet its wire time at the configured baud rate (4 Mbaud, return delay 0).  The
emulated motors follow their goals (no physics: a real hand's physics costs the loop
nothing), and the loop runs unpaced, so every figure is pure per-tick work.

The same checkpoints are exported twice, ``precision=fp32`` and ``precision=int8``
(dynamic int8 Linear layers, :mod:`dexndm.deploy.export`), and both run in this process,
the bundle-only timings interleaved in rounds so background load falls on both alike:

``inference_p50_ms / inference_p99_ms``  observation build + bundle forward (fp32; ``int8_`` prefix: int8)
``bus_read_p99_ms / bus_send_p99_ms``    one 16-motor sync read / goal sync write
``tick_p50_ms / tick_p99_ms``            read + inference + send
``inference_only_p99_ms``                the bundle alone, called back to back
``int8_over_fp32_p50 / _p99``            int8 / fp32 bundle-only latency (< 1: int8 is faster)
``int8_max_dev_command_rad``             int8 vs fp32 command, from the int8 manifest
``fp32_weight_mb``                       bytes of the fp32 bundle's parameters and buffers (MB)
``weight_read_floor_ms``                 the time one core takes to read that many bytes once (best of
                                         several sums over a buffer of that size, same run): no batch-1
                                         forward pass can be faster than reading its weights
``inference_only_p50_over_read_floor``   fp32 bundle-only p50 / that floor (1: at the memory-bandwidth limit)
``released_inference_only_p50_ms / _p99_ms``, ``released_fp32_weight_mb``: the released generalist
                                         (``checkpoints/generalist``, fp32, no residual) timed in the same
                                         interleaved rounds, where the checkout has it
Goals: ``inference_p99_ms`` < 2 and ``tick_p99_ms`` < 10 on one core.  At paper size the fp32 weights
(~64 MB) take longer than 2 ms to read on a core that streams under ~32 GB/s, so there only the int8
bundle can meet the first goal; the floor says which case a machine is in.
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
from dexndm.deploy.testing import RELEASED_GENERALIST, write_tiny_checkpoints
from dexndm.hand import constants as hc

BAUDRATE = 4_000_000


class _BenchHand(LeapHand):
    """The LEAP driver, unpaced (``realtime=False``) and starting where it stands."""

    realtime = False

    def start_target(self) -> np.ndarray:
        return self.last_command.copy()


def _inference_only(bundles: dict[str, object], n: int, rounds: int = 10) -> dict[str, np.ndarray]:
    """Bundle-only latency (ms) [n] per bundle, measured in ``rounds`` interleaved rounds."""
    g = torch.Generator().manual_seed(0)
    first = next(iter(bundles.values()))
    obs = torch.randn(1, first.layout.dim, generator=g)
    q = torch.as_tensor(hc.CANONICAL_POSE, dtype=torch.float32)[None]
    out = {k: [] for k in bundles}
    with torch.no_grad():
        for bundle in bundles.values():
            for _ in range(20):
                bundle(obs, q, q)
        for _ in range(rounds):
            for name, bundle in bundles.items():
                for _ in range(max(1, n // rounds)):
                    t = time.perf_counter()
                    bundle(obs, q, q)
                    out[name].append(time.perf_counter() - t)
    return {k: np.asarray(v) * 1e3 for k, v in out.items()}


def _read_floor_ms(nbytes: int, rounds: int = 20) -> float:
    """Best time (ms) of one core summing a float32 buffer of ``nbytes`` (reads every byte once)."""
    buf = torch.ones(max(1, nbytes // 4))
    buf.sum()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        buf.sum()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def _module_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def _loop_timing(bundle, port: str, ticks: int) -> dict[str, float]:
    """The deploy loop's per-tick timing (ms) for ``bundle`` on the emulated bus at ``port``."""
    hand = _BenchHand(LeapHandConfig(port=port, baudrate=BAUDRATE))
    hand.connect()
    try:
        cfg = LoopConfig(duration_s=ticks / 20.0, realtime=False, handle_sigint=False, keep_trace=False,
                         watchdog_s=1.0)
        rep = DeployLoop(hand, bundle, cfg, history=bundle.history).run()
    finally:
        hand.close()
    if rep.reason != "duration":
        raise RuntimeError(f"bench loop stopped early: {rep.reason}: {rep.message}")
    return {**rep.timing, "ticks": rep.ticks}


def run(quick: bool = False) -> dict:
    """Per-tick latency breakdown (ms) of the deploy loop at 4 Mbaud on one CPU thread, fp32 and int8."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ticks = 100 if quick else 600
    try:
        with tempfile.TemporaryDirectory() as tmp:
            gen, res = write_tiny_checkpoints(tmp, hidden=1024, blocks=5, res_hidden=256, res_depth=2)
            bundles = {p: load_bundle(export_bundle(gen, Path(tmp) / f"bundle_{p}", res, precision=p))
                       for p in ("fp32", "int8")}
            timed = dict(bundles)
            if RELEASED_GENERALIST.is_file():        # a source checkout: time the shipped policy too
                timed["released"] = load_bundle(export_bundle(RELEASED_GENERALIST, Path(tmp) / "bundle_released"))
            alone = _inference_only(timed, ticks)
            weight_bytes = _module_bytes(bundles["fp32"].policy)
            floor_ms = _read_floor_ms(weight_bytes)
            with DynamixelEmulator(ids=range(hc.NUM_JOINTS), baudrate=BAUDRATE) as emu:
                loops = {p: _loop_timing(b, emu.port, ticks) for p, b in bundles.items()}
    finally:
        torch.set_num_threads(threads)
    t, t8 = loops["fp32"], loops["int8"]
    p50 = {k: float(np.percentile(v, 50)) for k, v in alone.items()}
    p99 = {k: float(np.percentile(v, 99)) for k, v in alone.items()}
    dev = bundles["int8"].manifest["policy"]["quantization"]["max_abs_dev_vs_fp32_rad"]
    return {
        "ticks": t["ticks"], "baudrate": BAUDRATE, "torch_threads": 1,
        "inference_p50_ms": t["inference_p50_ms"], "inference_p99_ms": t["inference_p99_ms"],
        "inference_only_p50_ms": p50["fp32"], "inference_only_p99_ms": p99["fp32"],
        "bus_read_p50_ms": t["read_p50_ms"], "bus_read_p99_ms": t["read_p99_ms"],
        "bus_send_p50_ms": t["send_p50_ms"], "bus_send_p99_ms": t["send_p99_ms"],
        "tick_p50_ms": t["total_p50_ms"], "tick_p99_ms": t["total_p99_ms"], "tick_max_ms": t["total_max_ms"],
        "overruns": t["overruns"],
        "int8_inference_p50_ms": t8["inference_p50_ms"], "int8_inference_p99_ms": t8["inference_p99_ms"],
        "int8_inference_only_p50_ms": p50["int8"], "int8_inference_only_p99_ms": p99["int8"],
        "int8_tick_p50_ms": t8["total_p50_ms"], "int8_tick_p99_ms": t8["total_p99_ms"],
        "int8_over_fp32_p50": p50["int8"] / p50["fp32"], "int8_over_fp32_p99": p99["int8"] / p99["fp32"],
        "int8_max_dev_target_rad": dev["target"], "int8_max_dev_command_rad": dev["command"],
        "fp32_weight_mb": weight_bytes / 1e6, "weight_read_floor_ms": floor_ms,
        "inference_only_p50_over_read_floor": p50["fp32"] / floor_ms,
    } | ({"released_fp32_weight_mb": _module_bytes(timed["released"].policy) / 1e6,
          "released_inference_only_p50_ms": p50["released"], "released_inference_only_p99_ms": p99["released"]}
         if "released" in timed else {})


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=1))
