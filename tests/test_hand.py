"""The LEAP hand: constants, joint orders, and the MjSpec model built from them."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from dexndm.hand import constants as hc
from dexndm.hand.model import HandIndex, add_hand
from dexndm.sim.domain import load_domain
from dexndm.sim.scene import new_spec


def build(domain="nominal"):
    spec = new_spec(load_domain(domain))
    add_hand(spec, load_domain(domain))
    model = spec.compile()
    return model, mujoco.MjData(model), HandIndex.from_model(model)


def tips_at(q):
    model, data, idx = build()
    idx.set_joint_positions(data.qpos, q)
    mujoco.mj_kinematics(model, data)
    return data.site_xpos[idx.tip_sites].copy()


def test_isaac_order_round_trip_and_published_tables():
    x = np.arange(16.0)
    assert np.array_equal(hc.from_hardware_order(hc.to_hardware_order(x, "isaac"), "isaac"), x)
    assert np.array_equal(hc.to_hardware_order(hc.from_hardware_order(x, "isaac"), "isaac"), x)
    # LEAP_FACTS: real -> sim table of the Isaac Gym order.
    assert hc.HW_TO_ISAAC.tolist() == [1, 0, 2, 3, 9, 8, 10, 11, 13, 12, 14, 15, 4, 5, 6, 7]
    # The paper's canonical pose starts with index MCP forward (hardware ID 1) = 1.244.
    assert hc.CANONICAL_POSE[1] == pytest.approx(1.244) and hc.CANONICAL_POSE[0] == pytest.approx(0.082)
    assert hc.CANONICAL_POSE[12] == pytest.approx(1.163)  # thumb block follows index in Isaac order
    with pytest.raises(ValueError, match="16 joint values"):
        hc.to_hardware_order(np.zeros(15), "isaac")
    with pytest.raises(ValueError, match="unknown joint order"):
        hc.to_hardware_order(x, "mujoco")


def test_model_joints_limits_actuators_and_mass():
    model, _, idx = build()
    assert model.njnt == 16 and model.nu == 16
    names = [model.joint(int(j)).name for j in np.argsort(idx.motor_qpos)]
    assert sorted(names) == sorted(hc.JOINT_NAMES)
    for j, name in enumerate(hc.JOINT_NAMES):
        np.testing.assert_allclose(model.joint(name).range, [hc.JOINT_LOWER[j], hc.JOINT_UPPER[j]])
        act = model.actuator(name)
        assert act.gainprm[0] == pytest.approx(3.0) and act.biasprm[1] == pytest.approx(-3.0)
        np.testing.assert_allclose(act.forcerange, [-0.5, 0.5])
    assert model.body_mass.sum() == pytest.approx(0.749, abs=1e-6)  # LEAP_FACTS: about 0.746 kg


def test_pd_actuator_tracks_targets_in_free_space():
    model, data, idx = build()
    model.opt.gravity[:] = 0.0
    target = hc.CANONICAL_POSE
    data.ctrl[:] = target
    for _ in range(240):  # 2 s
        mujoco.mj_step(model, data)
    assert np.abs(idx.joint_positions(data.qpos) - target).max() < 0.05


def test_hand_frame_convention_and_span():
    flat = tips_at(np.zeros(16))
    canon = tips_at(hc.CANONICAL_POSE)
    finger_dir = flat[:3].mean(0)
    assert finger_dir[0] > 0.2 and abs(finger_dir[2]) < 0.1  # fingers extend along +x
    assert (canon[:3, 2] > flat[:3, 2] + 0.1).all()          # flexing curls tips to +z (palm side)
    assert flat[3, 1] < flat[0, 1] < flat[1, 1] < flat[2, 1]  # thumb on -y, then index, middle, ring
    span = np.linalg.norm(flat[0] - flat[2])
    assert span == pytest.approx(hc.FINGERTIP_SPAN, abs=0.008)


def test_canonical_fingertips_inside_workspace():
    rng = np.random.default_rng(0)
    samples = np.concatenate([tips_at(q) for q in rng.uniform(hc.JOINT_LOWER, hc.JOINT_UPPER, size=(300, 16))])
    lo, hi = samples.min(0), samples.max(0)
    canon = tips_at(hc.CANONICAL_POSE)
    assert ((canon > lo) & (canon < hi)).all()
    assert (canon[:, 2] > 0).all()  # the grasp is on the palm side


def test_backlash_adds_play_hinges_and_measured_angle_is_their_sum():
    model, data, idx = build({"joint": {"backlash": 0.04}})
    assert model.njnt == 32
    assert (idx.play_qpos >= 0).all()
    np.testing.assert_allclose(model.jnt_range[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "if_mcp_play")],
                               [-0.02, 0.02])
    qpos = np.zeros(model.nq)
    qpos[idx.motor_qpos] = 0.3
    qpos[idx.play_qpos] = 0.01
    np.testing.assert_allclose(idx.joint_positions(qpos), 0.31)


def test_backlash_delays_the_link_after_a_reversal():
    """The motor side turns through the play before the link follows a reversed command."""
    def lag(domain):
        model, data, idx = build(domain)
        model.opt.gravity[:] = 0.0
        for target, steps in ((0.6, 120), (0.4, 3)):
            data.ctrl[:] = hc.CANONICAL_POSE
            data.ctrl[idx.actuator[1]] = target
            for _ in range(steps):
                mujoco.mj_step(model, data)
        return idx.joint_positions(data.qpos)[1]

    assert lag({"joint": {"backlash": 0.1}}) > lag("nominal") + 0.005
