"""Tests for dexndm.sim.chaos_box: the simulated Chaos Box (DexNDM Sec. 3.3, Appendix C)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import check_env_specs

from dexndm.hand import constants as hc
from dexndm.sim import orientations as ori
from dexndm.sim.chaos_box import (ChaosBoxConfig, ChaosBoxEnv, ball_qpos_adr, box_center,
                                  build_chaos_box_model)
from dexndm.sim.domain import load_domain

SMALL = dict(num_envs=4, num_balls=12, settle_steps=20, nthread=2)
#: Joints driven by the open-loop test signal: MCP forward and PIP of middle and ring (the
#: index would touch the thumb).
WAVE_JOINTS = [5, 6, 9, 10]


def make(**overrides) -> ChaosBoxEnv:
    return ChaosBoxEnv({**SMALL, **overrides})


def wave(k: int, n: int) -> torch.Tensor:
    """Absolute targets [n, 16]: the canonical pose with a sine on a few flexion joints."""
    q = hc.CANONICAL_POSE.copy()
    q[WAVE_JOINTS] += 0.3 * np.sin(2 * np.pi * k / 20)
    return torch.as_tensor(q, dtype=torch.float32).expand(n, hc.NUM_JOINTS).clone()


def replay(env: ChaosBoxEnv, actions) -> list:
    td = env.reset()
    out = []
    for a in actions:
        td = env.step(td.set("action", a))["next"]
        out.append(td)
    return out


def test_check_env_specs():
    env = make()
    check_env_specs(env)
    td = env.reset()
    assert td["policy_obs"].shape == (4, env.layout.dim)
    assert td["contact_force"].shape == (4, len(hc.CONTACT_BODIES), 3)
    assert torch.equal(td["policy_obs"][:, -3:], torch.zeros(4, 3))  # no axis configured
    env.close()


def test_balls_load_the_hand():
    """Same open-loop targets, with and without balls: balls push on the hand and the joints lag."""
    still = [j for j in range(hc.NUM_JOINTS) if j not in WAVE_JOINTS]
    stats = {}
    for balls in (60, 0):
        env = make(num_envs=3, num_balls=balls, wrist=["palm_down", "thumb_up", "base_up"], seed=1)
        steps = replay(env, [wave(k, 3) for k in range(40)])[5:]
        force = np.stack([np.linalg.norm(td["contact_force"].numpy(), axis=-1).sum(1) for td in steps])
        err = np.stack([(td["joint_pos"] - td["joint_target"]).abs().numpy() for td in steps])
        torque = np.stack([td["joint_torque"].abs().numpy() for td in steps])
        stats[balls] = (force.mean(), err.mean(), torque[..., still].mean())
        env.close()
    (f_b, e_b, t_b), (f_0, e_0, t_0) = stats[60], stats[0]
    assert f_0 == 0.0, "the free hand must not touch anything on this trajectory"
    assert f_b > 0.5, stats
    assert e_b > 1.5 * e_0, stats   # tracking error |q - target|, all joints
    assert t_b > 1.5 * t_0, stats   # torque needed to hold the joints that do not move


def test_balls_stay_in_the_box_without_overlap():
    cfg = ChaosBoxConfig(**{**SMALL, "num_balls": 30, "wrist": "random"})
    domain, rng = load_domain(), np.random.default_rng(0)
    for _ in range(3):  # initial placement: no ball-ball overlap, inside the box
        g = ori.sample_unit_vectors(rng, 1)[0]
        model = build_chaos_box_model(domain, cfg, g, rng)
        pos = model.qpos0[ball_qpos_adr(model, cfg.num_balls)[:, :3]]
        radii = model.geom_size[-cfg.num_balls:, 0]
        dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + np.eye(cfg.num_balls)
        assert (dist >= radii[:, None] + radii[None] - 1e-9).all()
        assert (np.abs(pos - box_center(cfg, g)) <= np.asarray(cfg.box_size) - radii[:, None] + 1e-9).all()

    env = ChaosBoxEnv(cfg)
    gen = torch.Generator().manual_seed(0)
    td = env.reset()
    for k in range(100):  # the fingers flail between random targets over their whole range
        if k % 5 == 0:
            lo, hi = env.action_spec.space.low, env.action_spec.space.high
            action = lo + (hi - lo) * torch.rand(lo.shape, generator=gen)
        td = env.step(td.set("action", action))["next"]
        assert torch.isfinite(td["joint_pos"]).all() and torch.isfinite(td["policy_obs"]).all()
    pos = env.ball_positions()
    assert np.isfinite(pos).all() and env.blowups == 0
    rel = np.abs(pos - env.box_center[:, None])
    assert (rel <= env.box_size + 1e-3).all(), rel.max(axis=(0, 1))
    assert np.abs(env.physics.qvel).max() < 50.0
    env.close()


@pytest.mark.parametrize("wrist", ["named", "random"])
def test_balls_fall_towards_gravity(wrist):
    env = make(num_envs=6, wrist=wrist, seed=2)
    for _ in range(2):  # the second reset draws new orientations for every env
        env.reset()
        g = env.gravity_dir
        rel = env.ball_positions().mean(axis=1) - env.box_center
        along = (rel * g).sum(axis=1)
        assert (along > 0.05).all(), (g, along)
        # and not just an offset of the box: the pile sits on the side gravity points to
        across = np.linalg.norm(rel - along[:, None] * g, axis=1)
        assert (along > across).all(), (along, across)
    env.close()


def test_reset_pose_and_partial_reset():
    env = make(num_envs=3, action_mode="relative", seed=3)
    assert torch.equal(env.action_spec.space.high, torch.ones(3, 16))
    q = torch.as_tensor(0.5 * hc.CANONICAL_POSE, dtype=torch.float32).expand(3, 16).clone()
    td = env.reset(TensorDict({"reset_q": q}, batch_size=[3]))
    assert torch.allclose(td["joint_pos"], q, atol=0.05) and torch.allclose(td["joint_target"], q, atol=1e-6)
    td = env.step(td.set("action", torch.zeros(3, 16)))["next"]      # relative zero: hold the pose
    assert torch.allclose(td["joint_target"], q, atol=1e-6)
    before = env.physics.state.copy()
    gravity = env.gravity_dir.copy()
    td = env.reset(TensorDict({"_reset": torch.tensor([[False], [True], [False]])}, batch_size=[3]))
    assert np.array_equal(env.physics.state[[0, 2]], before[[0, 2]])
    assert np.array_equal(env.gravity_dir[[0, 2]], gravity[[0, 2]]) and not np.allclose(env.gravity_dir[1], gravity[1])
    assert torch.allclose(td["joint_pos"][1], torch.as_tensor(hc.CANONICAL_POSE, dtype=torch.float32), atol=0.05)
    env.close()


def test_truncation_at_episode_steps_and_on_blowup():
    env = make(num_envs=2, episode_steps=3)
    out = replay(env, [wave(0, 2)] * 3)
    assert [bool(td["truncated"].all()) for td in out] == [False, False, True]
    assert not any(bool(td["terminated"].any()) for td in out) and bool(out[-1]["done"].all())
    assert all(torch.equal(td["reward"], torch.zeros(2, 1)) for td in out)
    assert env.blowups == 0
    env.close()
    env = make(num_envs=2, max_ball_speed=1e-9, settle_steps=0)   # any moving ball counts as a blow-up
    td = replay(env, [wave(0, 2)])[0]
    assert bool(td["truncated"].all()) and env.blowups == 2
    env.close()


def test_config_validation():
    with pytest.raises(ValueError, match="ball_radiuss"):
        ChaosBoxConfig.from_dict({"ball_radiuss": [0.02, 0.03]})
    with pytest.raises(ValueError, match="ball_radius"):
        ChaosBoxConfig(ball_radius=(-0.01, 0.02))
    with pytest.raises(ValueError, match="box volume"):
        ChaosBoxConfig(num_balls=500)
    with pytest.raises(ValueError, match="wrist"):
        ChaosBoxConfig(wrist="sideways")
    cfg = ChaosBoxConfig.from_dict({"ball_radius": [0.02, 0.025], "box_size": [0.15, 0.13, 0.13]})
    assert cfg.ball_radius == (0.02, 0.025) and cfg.box_size == (0.15, 0.13, 0.13)
    # passes the volume check, but cannot be packed around the hand: the builder says so
    tight = ChaosBoxConfig(num_balls=100)       # 34% of the default box: about 85 fit around the hand
    with pytest.raises(ValueError, match="could not place"):
        build_chaos_box_model(load_domain(), tight, np.array([0.0, 0.0, -1.0]), np.random.default_rng(0))


def test_same_seed_same_trajectory():
    actions = [wave(k, 4) + 0.2 * torch.randn(4, 16, generator=torch.Generator().manual_seed(k)) for k in range(15)]
    runs = []
    for seed in (5, 5, 6):
        env = make(seed=seed)
        runs.append(np.stack([td["joint_pos"].numpy() for td in replay(env, actions)]))
        env.close()
    assert np.array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])
