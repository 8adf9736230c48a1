"""Reward terms (paper A.1) on constructed states, directly and through the environment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dexndm.sim import make_env, quat
from dexndm.sim.reward import TERMS, RewardConfig, reward_terms, total_reward


def terms_for(angvel, axis=(0, 0, 1), linvel=(0, 0, 0), q=None, q_init=None, torque=None, qdot=None, goal_angle=1.0,
              displacement=(0, 0, 0), tips=(True, True, True, True), cfg=None):
    """Terms for one env, or for several when ``displacement`` has several rows (the rest broadcast)."""
    displacement = np.atleast_2d(displacement).astype(float)
    n = len(displacement)
    rows = lambda a: np.broadcast_to(np.atleast_2d(a).astype(float), (n, 3))  # noqa: E731
    q = np.zeros((n, 16)) if q is None else np.atleast_2d(q)
    return reward_terms(
        cfg or RewardConfig(), angvel=rows(angvel), linvel=rows(linvel), axis=rows(axis), q=q,
        q_init=np.zeros((n, 16)) if q_init is None else q_init,
        torque=np.zeros((n, 6, 16)) if torque is None else torque, qdot=np.zeros((n, 6, 16)) if qdot is None else qdot,
        goal_angle=np.full(n, goal_angle), displacement=displacement,
        tip_contacts=np.broadcast_to(np.atleast_2d(tips), (n, 4)))


def test_rotation_term_is_clipped_projection():
    assert terms_for([0, 0, 0.3])["rot"][0] == pytest.approx(0.3)
    assert terms_for([0, 0, 2.0])["rot"][0] == pytest.approx(0.5)
    assert terms_for([0, 0, -2.0])["rot"][0] == pytest.approx(-0.5)
    assert terms_for([0.3, 0, 0])["rot"][0] == pytest.approx(0.0)


def test_without_the_backward_clip_shaking_earns_less_than_it_turns():
    cfg = RewardConfig(rot_clip=1.0, clip_backward=False)
    assert terms_for([0, 0, 2.0], cfg=cfg)["rot"][0] == pytest.approx(1.0)
    assert terms_for([0, 0, -2.0], cfg=cfg)["rot"][0] == pytest.approx(-2.0)
    shake = np.array([0.9, 0.9, 0.9, -2.6])                  # slow forward, fast back: net 0.025 rad/s
    paid = lambda c: np.mean([terms_for([0, 0, w], cfg=c)["rot"][0] for w in shake])  # noqa: E731
    assert paid(RewardConfig(rot_clip=1.0)) == pytest.approx(0.425)  # symmetric clip: 17x the true rate
    assert paid(cfg) == pytest.approx(shake.mean())                  # one-sided: the true rate


def test_off_axis_spin_is_penalised_by_l1_cross_product():
    on = terms_for([0, 0, 0.4])
    off = terms_for([0.3, -0.4, 0.0])
    assert on["offaxis"][0] == pytest.approx(0.0)
    assert off["offaxis"][0] == pytest.approx(0.4 + 0.3)  # |w x z|_1 = |wy| + |wx|


def test_penalty_terms_and_weights():
    torque = np.full((1, 6, 16), 0.1)
    qdot = np.full((1, 6, 16), -2.0)
    t = terms_for([0, 0, 0], linvel=[0.1, 0.2, 0], q=np.full(16, 0.1), torque=torque, qdot=qdot)
    assert t["lin_vel"][0] == pytest.approx(0.05)
    assert t["pose"][0] == pytest.approx(16 * 0.01)
    assert t["work"][0] == pytest.approx(16 * 0.2)   # |tau . qdot|, negative work penalised too
    assert t["torque"][0] == pytest.approx(16 * 0.01)
    cfg = RewardConfig()
    total = total_reward(cfg, t, resets=1000)
    expected = -(0.3 * 0.05 + 0.3 * 0.16 + 2.0 * 3.2 + 0.1 * 0.16) + cfg.goal_weight * t["goal"][0] + cfg.alive_bonus
    assert total[0] == pytest.approx(expected)


def test_pose_tolerance_penalises_only_what_lies_beyond_it():
    q = np.zeros(16)
    q[0], q[5], q[9] = 0.1, -0.5, 0.35          # joint 0 inside the band, 5 and 9 beyond it
    cfg = RewardConfig(pose_tolerance=0.25)
    assert terms_for([0, 0, 0], q=q, cfg=cfg)["pose"][0] == pytest.approx(0.25 ** 2 + 0.1 ** 2)
    assert terms_for([0, 0, 0], q=q)["pose"][0] == pytest.approx(0.01 + 0.25 + 0.1225)
    with pytest.raises(ValueError, match="pose_tolerance"):
        RewardConfig(pose_tolerance=-0.1)


def test_position_term_is_distance_from_start_and_off_by_default():
    t = terms_for([0, 0, 0], displacement=[[0.03, -0.04, 0.0], [0.0, 0.0, 0.0]])
    assert t["position"] == pytest.approx([0.05, 0.0])
    assert total_reward(RewardConfig(), t, resets=1000)[0] == pytest.approx(total_reward(RewardConfig(), t, 1000)[1])
    away, home = total_reward(RewardConfig(position=4.0), t, resets=1000)
    assert home - away == pytest.approx(4.0 * 0.05)


def test_tip_contact_term_is_the_fraction_of_fingertips_touching_and_off_by_default():
    t = terms_for([0, 0, 0], displacement=[[0, 0, 0]] * 3,
                  tips=[[True, True, True, True], [True, False, True, False], [False] * 4])
    assert t["tip_contact"] == pytest.approx([1.0, 0.5, 0.0])
    assert np.ptp(total_reward(RewardConfig(), t, resets=1000)) == 0.0
    paid = total_reward(RewardConfig(tip_contact=0.4), t, resets=1000)
    assert paid - paid[2] == pytest.approx([0.4, 0.2, 0.0])


def test_rotation_gate_fades_rotation_as_the_object_leaves_its_start():
    disp = [[0.0, 0.0, 0.0], [-0.015, 0.0, 0.0], [0.0, 0.04, 0.0]]
    assert terms_for([0, 0, 0.4], displacement=disp)["rot"] == pytest.approx([0.4, 0.4, 0.4])
    gated = terms_for([0, 0, 0.4], displacement=disp, cfg=RewardConfig(rot_gate_distance=0.03))
    assert gated["rot"] == pytest.approx([0.4, 0.2, 0.0])
    with pytest.raises(ValueError, match="rot_gate_distance"):
        RewardConfig(rot_gate_distance=0.0)


def test_pose_gate_fades_rotation_as_the_joints_leave_their_grasp_pose():
    q = np.zeros((3, 16))
    q[1, 0] = 0.5            # 0.25 rad^2 from the grasp pose
    q[2, :4] = 1.0 / 2 ** 0.5  # 2.0 rad^2: beyond the gate
    disp = [[0.0, 0.0, 0.0]] * 3
    assert terms_for([0, 0, 0.4], displacement=disp, q=q)["rot"] == pytest.approx([0.4, 0.4, 0.4])
    gated = terms_for([0, 0, 0.4], displacement=disp, q=q, cfg=RewardConfig(rot_gate_pose=1.0))
    assert gated["rot"] == pytest.approx([0.4, 0.3, 0.0])
    backward = terms_for([0, 0, -0.4], displacement=disp, q=q, cfg=RewardConfig(rot_gate_pose=1.0, clip_backward=False))
    assert backward["rot"] == pytest.approx([-0.4, -0.4, -0.4])  # turning back is charged in full
    with pytest.raises(ValueError, match="rot_gate_pose"):
        RewardConfig(rot_gate_pose=-1.0)


def test_alive_bonus_while_held_and_drop_penalty_when_dropped():
    cfg = RewardConfig(alive_bonus=0.7, drop_penalty=3.0)
    t = {k: np.concatenate([v, v]) for k, v in terms_for([0, 0, 0]).items()}
    held, dropped = total_reward(cfg, t, resets=1000, dropped=np.array([False, True]))
    assert held - dropped == pytest.approx(0.7 + 3.0)


def test_goal_term_rewards_closeness_and_bonus_inside_threshold():
    cfg = RewardConfig()
    far = terms_for([0, 0, 0], goal_angle=np.pi / 2)["goal"][0]
    near = terms_for([0, 0, 0], goal_angle=np.deg2rad(20))["goal"][0]
    inside = terms_for([0, 0, 0], goal_angle=np.deg2rad(10))["goal"][0]
    assert far == pytest.approx(cfg.goal_gain / (np.pi / 2 + cfg.goal_eps))
    assert far < near < inside
    assert inside - min(cfg.goal_gain / (np.deg2rad(10) + cfg.goal_eps), cfg.goal_clip) == pytest.approx(cfg.goal_bonus)


def test_alpha_rot_schedule_over_resets():
    cfg = RewardConfig()
    assert [cfg.schedule(r) for r in (0, 10, 55, 100, 500)] == pytest.approx([0, 0, 0.5, 1, 1])
    t = terms_for([0, 0, 0.4])
    goal = cfg.goal_weight * t["goal"][0] + cfg.alive_bonus
    assert total_reward(cfg, t, resets=0)[0] == pytest.approx(goal)
    assert total_reward(cfg, t, resets=200)[0] == pytest.approx(goal + 0.1 * 0.4)
    with pytest.raises(ValueError, match="schedule_targets"):
        RewardConfig(schedule_targets=["pose"])


def _spin_object(env, omega_world):
    """Put every env's object in free flight away from the hand, spinning at omega_world."""
    ph, oq, od = env.physics, env.sampler.object_qpos, env.sampler.object_dof
    qpos, qvel = ph.qpos, ph.qvel
    qpos[:, oq:oq + 3] += np.array([0.0, 0.0, 0.25])
    # A free joint's angular velocity is in the body frame: rotate the world vector in.
    q = qpos[:, oq + 3:oq + 7]
    qvel[:, od + 3:od + 6] = quat.mul(quat.mul(quat.conj(q), np.concatenate([np.zeros((len(q), 1)), omega_world], 1)), q)[:, 1:]
    qvel[:, od:od + 3] = 0.0


@pytest.mark.parametrize("omega, rot, offaxis", [((0, 0, 0.3), 0.3, 0.0), ((0.2, 0, 0), 0.0, 0.2)])
def test_env_reward_terms_on_a_spinning_object(tiny_env_cfg, omega, rot, offaxis):
    env = make_env(tiny_env_cfg, domain={"physics": {"gravity": 0.0}}, randomization={"enabled": False})
    td = env.reset()
    _spin_object(env, np.tile(omega, (env.batch_size[0], 1)))
    td["action"] = torch.zeros(env.batch_size[0], 16)
    out = env.step(td)["next"]
    terms = dict(zip(TERMS, out["reward_terms"].T))
    torch.testing.assert_close(terms["rot"], torch.full((4,), rot), atol=2e-3, rtol=0)
    torch.testing.assert_close(terms["offaxis"], torch.full((4,), offaxis), atol=2e-3, rtol=0)
    torch.testing.assert_close(terms["position"], torch.full((4,), 0.25), atol=2e-3, rtol=0)  # lifted 25 cm
    assert (terms["tip_contact"] == 0).all()  # no fingertip touches an object in free flight
    assert out["terminated"].all()  # 25 cm away from where it started: out of the hand
    env.close()


def test_env_tip_contact_term_counts_the_grasping_fingertips(tiny_env_cfg):
    """A fresh grasp touches the object with >= 3 fingertips (the grasp caches' criterion)."""
    env = make_env(tiny_env_cfg, randomization={"enabled": False})
    td = env.reset()
    td["action"] = torch.zeros(env.batch_size[0], 16)
    terms = dict(zip(TERMS, env.step(td)["next"]["reward_terms"].T))
    assert (terms["tip_contact"] >= 0.75).all()
    env.close()


def test_drift_term_sees_the_creep_of_the_targets_not_a_gait_about_the_pose(tiny_env_cfg):
    """The drift term is the squared distance of the targets' moving average from the first
    targets: a constant creep builds it up, a back-and-forth of the same size barely does."""
    steps, n = 8.0, 4
    env = make_env(tiny_env_cfg, randomization={"enabled": False},
                   reward={"drift": 1.0, "drift_steps": steps, "pose": 0.0})
    td = env.reset()
    first = env.control.target.copy()
    expected = first.copy()
    creep, gait = np.zeros(n), np.zeros(n)
    for k in range(16):
        action = np.zeros((n, 16))
        action[:2, 3] = 1.0                                   # envs 0, 1: one joint creeps up
        action[2:, 3] = 1.0 if k % 4 < 2 else -1.0            # envs 2, 3: the same joint goes back and forth
        td["action"] = torch.as_tensor(action, dtype=torch.float32)
        out = env.step(td)
        expected += (env.control.target - expected) / steps
        drift = out["next", "reward_terms"][:, TERMS.index("drift")].numpy()
        np.testing.assert_allclose(drift, ((expected - first) ** 2).sum(-1), rtol=1e-5, atol=1e-9)
        creep, gait = drift[:2], drift[2:]
    assert (creep > 20 * gait).all() and (creep > 0).all()
    # the weight enters the reward as a penalty
    terms = {t: np.zeros(1) for t in TERMS}
    terms["drift"] = np.array([2.0])
    cfg = RewardConfig(drift=0.5, alive_bonus=0.0, goal_weight=0.0)
    assert total_reward(cfg, terms, resets=1000)[0] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="drift_steps"):
        RewardConfig(drift_steps=0.5)
    env.close()
