"""LEAP hand driver and Dynamixel bus against the pty emulator (no hardware)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("dynamixel_sdk")

from dexndm.deploy.bus import BusError, DynamixelBus  # noqa: E402
from dexndm.deploy.emulator import DynamixelEmulator  # noqa: E402
from dexndm.deploy.leap_hand import (  # noqa: E402
    LeapHand,
    LeapHandConfig,
    current_to_ma,
    rad_to_ticks,
    ticks_to_rad,
    velocity_to_rad_s,
)
from dexndm.hand.constants import JOINT_LOWER, JOINT_UPPER  # noqa: E402

REGS = ("operating_mode", "return_delay_time", "position_p_gain", "position_i_gain",
        "position_d_gain", "goal_current", "goal_position", "torque_enable")


@pytest.fixture
def emu():
    with DynamixelEmulator(ids=range(16)) as e:
        yield e


@pytest.fixture
def hand(emu):
    h = LeapHand(LeapHandConfig(port=emu.port))
    h.connect()
    yield h
    h.close()


def goals_after(hand, emu) -> tuple[np.ndarray, np.ndarray]:
    """Present q (one read round trip, so every earlier sync write has landed) and goal ticks."""
    q = hand.read()["q"]
    return q, np.array([emu.motors[i].get("goal_position") for i in range(16)])


def snapshot(emu) -> dict:
    return {i: {r: m.get(r) for r in REGS} for i, m in emu.motors.items()}


def test_unit_conversions() -> None:
    assert rad_to_ticks(np.zeros(16)).tolist() == [2048] * 16
    assert rad_to_ticks([-math.pi, math.pi / 2]).tolist() == [0, 3072]
    q = np.linspace(-1.2, 2.4, 16)
    assert np.abs(ticks_to_rad(rad_to_ticks(q)) - q).max() <= math.pi / 4096 + 1e-12
    ticks = np.arange(0, 4096, 97)
    assert (rad_to_ticks(ticks_to_rad(ticks)) == ticks).all()
    assert velocity_to_rad_s([100])[0] == pytest.approx(100 * 0.229 * 2 * math.pi / 60)
    assert current_to_ma([-261])[0] == pytest.approx(-349.74)


def test_connect_configures_every_motor(emu, hand) -> None:
    np.testing.assert_allclose(hand.read()["q"], 0.0, atol=1e-12)  # also syncs with the emulator
    for i, m in emu.motors.items():
        assert m.get("operating_mode") == 5
        assert m.get("return_delay_time") == 0
        assert m.get("position_p_gain") == (600 if i in (0, 4, 8) else 800)
        assert m.get("position_i_gain") == 0
        assert m.get("position_d_gain") == 200
        assert m.get("goal_current") == round(350 / 1.34)
        assert m.get("torque_enable") == 1
        assert m.get("goal_position") == 2048  # held where it stood: no jump


def test_command_clamps_and_matches_registers(emu, hand) -> None:
    step = hand.config.max_step_rad
    target = np.full(16, 0.1)
    target[1] = 2.0  # too far in one tick
    target[2] = -5.0  # below the limit, and too far
    target[3] = np.nan
    sent = hand.command(target)
    assert sent[0] == pytest.approx(0.1, abs=1e-3)
    assert sent[1] == pytest.approx(step, abs=1e-3)
    assert sent[2] == pytest.approx(-step, abs=1e-3)
    assert sent[3] == 0.0  # NaN holds the last command
    q, goals = goals_after(hand, emu)
    assert (goals == rad_to_ticks(sent)).all()
    np.testing.assert_array_equal(q, sent)

    # Walk far out of range: the command ends at the limits and never steps past max_step.
    prev = sent
    for _ in range(30):
        sent = hand.command(np.full(16, 10.0) * np.sign(np.arange(16) % 2 - 0.5))
        assert np.abs(sent - prev).max() <= step + math.pi / 4096
        prev = sent
    want = np.where(np.arange(16) % 2, JOINT_UPPER, JOINT_LOWER)
    np.testing.assert_allclose(sent, want, atol=2 * math.pi / 4096)      # the nearest tick inside the limits
    assert (sent >= JOINT_LOWER).all() and (sent <= JOINT_UPPER).all()
    q, goals = goals_after(hand, emu)
    assert (goals == rad_to_ticks(sent)).all()
    np.testing.assert_array_equal(q, sent)
    with pytest.raises(ValueError, match="16"):
        hand.command(np.zeros(3))


def test_disable_turns_torque_off(emu, hand) -> None:
    hand.disable()
    hand.bus.read("torque_enable", 15)  # round trip: the sync write has landed
    assert all(m.get("torque_enable") == 0 for m in emu.motors.values())


@pytest.mark.parametrize("bad", [
    {"current_limit_ma": 900}, {"current_limit_ma": 0}, {"kp": -1}, {"kd": float("nan")},
    {"side_kp_scale": 0}, {"max_step_rad": 0}, {"return_delay": -1}, {"baudrate": 123},
    {"min_reply_timeout_ms": -1}, {"min_reply_timeout_ms": float("inf")},
])
def test_bad_config_refused_before_any_motor_moves(emu, bad) -> None:
    before = snapshot(emu)
    with pytest.raises(ValueError, match=next(iter(bad))):
        LeapHandConfig(port=emu.port, **bad)
    cfg = LeapHandConfig(port=emu.port)
    for k, v in bad.items():
        setattr(cfg, k, v)  # mutated after construction: connect() re-validates
    received = emu.packets_received
    with pytest.raises(ValueError, match="invalid LeapHandConfig"):
        LeapHand(cfg)
    hand = LeapHand(LeapHandConfig(port=emu.port))
    setattr(hand.config, *next(iter(bad.items())))
    with pytest.raises(ValueError, match="invalid LeapHandConfig"):
        hand.connect()
    assert emu.packets_received == received
    assert snapshot(emu) == before


def test_missing_port_is_a_clear_error(tmp_path) -> None:
    port = str(tmp_path / "ttyUSB9")
    with pytest.raises(BusError, match="ttyUSB9.*check"):
        LeapHand(LeapHandConfig(port=port)).connect()


def test_silent_motor_names_its_id(emu, hand) -> None:
    emu.faults.drop_ids = {9}
    with pytest.raises(BusError, match="motor 9") as e:
        hand.read()
    assert e.value.dxl_id == 9
    emu.faults.drop_ids = set()
    hand.bus.port_handler.clearPort()


def test_bus_single_register_and_signed_block(emu) -> None:
    with DynamixelBus(emu.port, ids=[3, 5]) as bus:
        bus.write("position_p_gain", 3, 777)
        assert bus.read("position_p_gain", 3) == 777
        emu.motors[5].set("present_current", -12)  # int16 two's complement
        emu.motors[5].set("present_velocity", -3)  # int32
        block = bus.sync_read_block("present_current", "present_position")
        assert block[5] == {"present_current": -12, "present_velocity": -3, "present_position": 2048}
        assert set(block) == {3, 5}
        with pytest.raises(BusError, match="motor 40"):
            bus.read("present_position", 40)
