"""Injected bus faults against the emulated hand: each gives the specified loop behaviour.

corrupted CRC / silent motor / late replies past the reply timeout -> N consecutive bus errors
-> hold and stop, the motor named; a transient fault -> the run continues (the recording is
split where the q/target chain broke and still validates); a late reply inside the timeout
-> a slower tick, no error; hardware-error status -> immediate stop naming motor and cause.
The hand's reply timeout is REPLY_TIMEOUT_MS, past the SDK's ~34 ms, so that a loaded machine
does not fail these tests; the SDK's own timeout is tested on the bare bus (test_dynamixel_protocol).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dexndm.data.validate import validate
from dexndm.deploy.export import export_bundle, load_bundle
from dexndm.deploy.hands import make_hand
from dexndm.deploy.loop import DeployLoop, LoopConfig
from dexndm.deploy.recorder import SegmentRecorder, open_writer
from dexndm.deploy.testing import write_tiny_checkpoints

torch.set_num_threads(1)
FAULT_TICK = 5
REPLY_TIMEOUT_MS = 200


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    gen, res = write_tiny_checkpoints(tmp_path_factory.mktemp("ckpt"))
    return load_bundle(export_bundle(gen, tmp_path_factory.mktemp("b") / "bundle", res))


@pytest.fixture
def hand(grasp_dir):
    with make_hand({"kind": "emulated", "sim": {"grasp_dir": grasp_dir, "grasp_candidates": 32},
                    "reply_timeout_ms": REPLY_TIMEOUT_MS}) as h:
        yield h


def run_with_fault(hand, policy, inject, clear=None, *, clear_tick=None, duration=1.5, max_bus_errors=3,
                   recorder=None):
    def hook(loop, tick):
        if tick == FAULT_TICK:
            inject(hand.emulator)
        if clear is not None and tick == clear_tick:
            clear(hand.emulator)
    cfg = LoopConfig(duration_s=duration, max_bus_errors=max_bus_errors)
    return DeployLoop(hand, policy, cfg, on_tick=hook, recorder=recorder).run()


def _hold_sent(rep) -> None:
    """The stop action re-sent the last command (hold), nothing else."""
    np.testing.assert_array_equal(rep.sent[-1], rep.sent[-2])


def test_corrupted_crc_stops_after_n_errors(hand, policy) -> None:
    rep = run_with_fault(hand, policy, lambda e: e.faults.corrupt_crc_ids.add(4))
    assert rep.reason == "bus_errors" and rep.motor == 4 and rep.bus_errors == 3
    assert rep.ticks == FAULT_TICK and "motor 4" in rep.message and "hold" in rep.message
    _hold_sent(rep)


def test_silent_motor_stops_naming_it(hand, policy) -> None:
    rep = run_with_fault(hand, policy, lambda e: e.faults.drop_ids.add(9), max_bus_errors=2)
    assert rep.reason == "bus_errors" and rep.motor == 9 and rep.bus_errors == 2
    assert "motor 9" in rep.message
    _hold_sent(rep)


def test_late_replies_past_the_timeout_are_bus_errors(hand, policy) -> None:
    def late(e):
        e.faults.delay_s, e.faults.delay_ids = 0.35, {3}         # past REPLY_TIMEOUT_MS
    rep = run_with_fault(hand, policy, late)
    assert rep.reason == "bus_errors" and rep.motor == 3 and rep.ticks == FAULT_TICK


def test_the_configured_reply_timeout_waits_for_replies_the_sdk_would_drop(hand, policy) -> None:
    assert hand.bus.port_handler.min_reply_timeout_ms == REPLY_TIMEOUT_MS
    def late(e):
        e.faults.delay_s, e.faults.delay_ids = 0.06, {3}         # past the SDK's ~34 ms, inside 200 ms
    rep = run_with_fault(hand, policy, late, duration=0.5)
    assert rep.reason == "duration" and rep.bus_errors == 0 and rep.ticks == 10
    assert rep.timing["read_max_ms"] > 60


def test_late_replies_inside_the_timeout_only_slow_the_tick(hand, policy) -> None:
    def late(e):
        e.faults.delay_s = 0.0005         # every reply: >= 8 ms per sync read, well inside the timeout
    rep = run_with_fault(hand, policy, late, duration=0.5)
    assert rep.reason == "duration" and rep.bus_errors == 0 and rep.ticks == 10
    assert rep.timing["read_max_ms"] > 8


def test_transient_dropped_replies_recover(hand, policy, tmp_path) -> None:
    writer = open_writer(tmp_path / "r.h5", domain=hand.describe(), source={"kind": "policy"}, config={})
    with writer:
        rec = SegmentRecorder(writer, 200)

        def clear(e):
            e.faults.drop_probability = 0.0
        rep = run_with_fault(hand, policy, lambda e: setattr(e.faults, "drop_probability", 1.0), clear,
                             clear_tick=FAULT_TICK + 2, recorder=rec)
    assert rep.reason == "duration" and rep.ticks == 30 and rep.bus_errors == 2
    assert rep.segments == 2                                     # split where the chain broke
    assert validate(tmp_path / "r.h5") == []


def test_hardware_error_stops_at_once_naming_motor_and_cause(hand, policy) -> None:
    rep = run_with_fault(hand, policy, lambda e: e.set_hardware_error(6, 0x20))
    assert rep.reason == "hardware_error" and rep.motor == 6 and rep.bus_errors == 0
    assert rep.ticks == FAULT_TICK
    assert "motor 6" in rep.message and "overload" in rep.message and "0x20" in rep.message
    assert not rep.clean
