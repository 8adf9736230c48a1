"""SimHand: the MuJoCo target domain behind the LEAP hand's interface (no hardware)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dexndm.deploy.hands import HandSpec, make_hand
from dexndm.deploy.leap_hand import rad_to_ticks, ticks_to_rad
from dexndm.deploy.sim_hand import SimHand, SimHandConfig
from dexndm.hand.constants import JOINT_LOWER, JOINT_UPPER

TICK = 2 * math.pi / 4096


@pytest.fixture
def hand(grasp_dir):
    with SimHand(SimHandConfig(grasp_dir=grasp_dir, grasp_candidates=32)) as h:
        yield h


def test_read_and_interface(hand) -> None:
    s = hand.read()
    assert {k: v.shape for k, v in s.items()} == {"q": (16,), "qdot": (16,), "current": (16,)}
    assert np.isfinite(np.concatenate(list(s.values()))).all()
    np.testing.assert_array_equal(hand.last_command, s["q"])           # connect holds the present pose
    assert hand.realtime is False and hand.object_pose().shape == (7,)
    d = hand.describe()
    assert d["name"] == "nominal" and d["sim_hand"]["wrist"] == "palm_up"
    np.testing.assert_allclose(hand.gravity_dir, [0, 0, -1])


def test_command_advances_one_tick_and_clamps(hand) -> None:
    q0 = hand.read()["q"]
    target = q0.copy()
    target[0] = 5.0          # beyond the limit and the step
    target[1] = np.nan       # holds
    target[2] = q0[2] - 0.1
    sent = hand.command(target)
    assert hand.ticks == 1
    assert sent[0] == pytest.approx(min(q0[0] + 0.25, JOINT_UPPER[0]))
    assert sent[1] == q0[1] and sent[2] == pytest.approx(q0[2] - 0.1)
    np.testing.assert_allclose(hand.env.control.sent[0], np.clip(sent, JOINT_LOWER, JOINT_UPPER), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(hand.env.control.target[0], hand.start_target())   # the env's chain is untouched
    assert not np.array_equal(hand.read()["q"], q0)                         # time passed
    hand.disable()
    hand.command(sent)
    assert hand.ticks == 1                                                  # torque off: frozen


def test_grasp_target_holds_the_object(hand) -> None:
    start = hand.start_target()
    p0 = hand.object_pose()
    for _ in range(40):
        hand.command(start)
    assert not hand.metrics()["dropped"]
    assert np.linalg.norm(hand.object_pose()[:3] - p0[:3]) < 0.03
    assert abs(hand.metrics()["rotation_rad"]) < 0.5


def test_quantize_matches_the_bus_path(grasp_dir) -> None:
    with SimHand(SimHandConfig(grasp_dir=grasp_dir, grasp_candidates=32, quantize=True)) as h:
        q = h.read()["q"]
        np.testing.assert_array_equal(ticks_to_rad(rad_to_ticks(q)), q)
        sent = h.command(np.asarray(JOINT_UPPER) + 1.0)
        assert (sent <= JOINT_UPPER).all()                                   # rounded inside the limits
        np.testing.assert_allclose(sent, ticks_to_rad(rad_to_ticks(sent)))
        assert np.abs(sent - q).max() <= 0.25 + TICK


def test_domains_and_validation(grasp_dir) -> None:
    with make_hand({"kind": "sim", "sim": {"domain": "latency", "grasp_dir": grasp_dir, "grasp_candidates": 32}}) as h:
        assert h.env.domain.latency_control_steps >= 1
        h.command(h.start_target())
    with pytest.raises(ValueError, match="wrist"):
        SimHandConfig(wrist="upside")
    with pytest.raises(ValueError, match="max_step_rad"):
        SimHandConfig(max_step_rad=0)
    with pytest.raises(ValueError, match="unknown keys.*bogus"):
        HandSpec.from_dict({"kind": "sim", "sim": {"bogus": 1}})
    with pytest.raises(ValueError, match=r"grasp: unknown keys \['palm_blnd'\]"):
        SimHandConfig(grasp={"palm_blnd": [0.8, 1.0]})
    with pytest.raises(ValueError, match="hand.kind"):
        HandSpec.from_dict({"kind": "robot"})
    with pytest.raises(RuntimeError, match="connect"):
        SimHand(SimHandConfig()).read()
