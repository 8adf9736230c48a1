"""The batched TorchRL rotation environment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from dexndm.sim import make_env
from dexndm.sim.metrics import EPISODE_METRICS
from dexndm.sim.objects import object_set

TASKS = sorted(p.stem for p in (Path(__file__).parents[1] / "dexndm" / "conf" / "task").glob("*.yaml"))


def test_check_env_specs(tiny_env_cfg):
    env = make_env(tiny_env_cfg, wrist="random", axes="all")
    check_env_specs(env, seed=0)
    env.close()


@pytest.mark.parametrize("task", TASKS)
def test_every_registered_task_resets_and_steps(task, grasp_dir):
    assert len(TASKS) == 6
    first = object_set(task)[0].name
    env = make_env(num_envs=2, object_set=task, object_names=[first], wrist="palm_up", axes="z",
                   grasp_dir=grasp_dir, grasp={"candidates": 32}, randomization={"scale_bins": 1})
    td = env.reset()
    assert td["observation"].shape == (2, env.priv_layout.dim)
    assert td["policy_obs"].shape == (2, env.deploy_layout.dim)
    for _ in range(5):
        td["action"] = torch.rand(2, 16) * 2 - 1
        td = env.step(td)["next"]
        for key in ("observation", "policy_obs", "reward", "reward_terms"):
            assert torch.isfinite(td[key]).all(), key
    env.close()


def run(cfg, steps=30, seed=0):
    env = make_env(cfg, wrist="random", axes="all")
    env.set_seed(seed)
    td = env.reset()
    gen = torch.Generator().manual_seed(1)
    obs = []
    for _ in range(steps):
        td["action"] = torch.rand(env.batch_size[0], 16, generator=gen) * 2 - 1
        td = env.step_and_maybe_reset(td)[1]
        obs.append(td["observation"].clone())
    env.close()
    return torch.stack(obs)


def test_same_seed_same_trajectory(tiny_env_cfg):
    a, b = run(tiny_env_cfg), run(tiny_env_cfg)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = run(tiny_env_cfg, seed=7)
    assert not torch.equal(a, c)


def test_partial_reset_touches_only_masked_envs(tiny_env_cfg):
    env = make_env(tiny_env_cfg, randomization={"enabled": False})
    td = env.reset()
    for _ in range(3):
        td["action"] = torch.rand(4, 16) * 2 - 1
        td = env.step(td)["next"]
    before = td["observation"].clone()
    mask = torch.tensor([[True], [False], [False], [True]])
    after = env.reset(td.clone().set("_reset", mask))["observation"]
    torch.testing.assert_close(after[1:3], before[1:3])
    assert not torch.equal(after[0], before[0])
    assert (env.tracker.steps == np.array([0, 3, 3, 0])).all()
    env.close()


def test_cached_grasps_hold_for_two_seconds_palm_up(tiny_env_cfg):
    env = make_env(tiny_env_cfg, num_envs=8, randomization={"enabled": False})
    td = env.reset()
    start = env.start_pos.copy()
    for _ in range(40):  # 2 s at 20 Hz, zero action
        td["action"] = torch.zeros(8, 16)
        td = env.step(td)["next"]
        assert not td["done"].any()
    oq = env.sampler.object_qpos
    drift = np.linalg.norm(env.physics.qpos[:, oq:oq + 3] - start, axis=1)
    assert drift.max() < 0.015
    env.close()


def test_blowup_is_reset_counted_and_never_reaches_observations(tiny_env_cfg):
    env = make_env(tiny_env_cfg)
    td = env.reset()
    env.physics.state[2, 5] = np.nan
    td["action"] = torch.zeros(4, 16)
    out = env.step(td)["next"]
    assert env.blowups == 1
    assert out["truncated"][2] and not out["terminated"][2]
    assert out["episode_metrics"][2, EPISODE_METRICS.index("blowup")] == 1
    assert torch.isfinite(out["observation"]).all() and out["reward"][2] == 0
    td = env.reset(out.set("_reset", out["done"]))
    assert np.isfinite(env.physics.state).all()
    env.close()


def test_episode_ends_at_400_steps_with_metrics(tiny_env_cfg):
    env = make_env(tiny_env_cfg, episode_steps=12, randomization={"enabled": False})
    td = env.reset()
    for step in range(12):
        td["action"] = torch.zeros(4, 16)
        td = env.step(td)["next"]
    assert td["truncated"].all() and td["episode_ended"].all()
    metrics = dict(zip(EPISODE_METRICS, td["episode_metrics"].T))
    torch.testing.assert_close(metrics["ttf"], torch.ones(4))
    torch.testing.assert_close(metrics["length"], torch.full((4,), 12.0))
    env.close()


def test_staggered_episodes_are_truncated_at_their_limits_and_not_counted(tiny_env_cfg):
    env = make_env(tiny_env_cfg, num_envs=8, episode_steps=12, randomization={"enabled": False})
    td = env.reset()
    limits = env.stagger_episodes()
    assert limits.min() >= 1 and limits.max() <= 12 and len(set(limits.tolist())) > 1
    done_at = np.zeros(8, dtype=int)
    for step in range(1, 13):
        td["action"] = torch.zeros(8, 16)
        nxt = env.step(td)["next"]
        done = nxt["done"].reshape(-1).numpy()
        for i in np.flatnonzero(done & (done_at == 0)):
            done_at[i] = step
            assert nxt["truncated"][i] and not nxt["terminated"][i]
            assert bool(nxt["episode_ended"][i]) == (step == 12)   # only full-length episodes count
        td = env.reset(nxt.set("_reset", nxt["done"])) if done.any() else nxt
    np.testing.assert_array_equal(done_at, limits)
    assert (env.episode_limit[done_at < 12] == 12).all()     # the next episodes run full length
    env.close()


def test_pose_actions_move_the_targets_towards_the_pose_at_the_relative_rate(tiny_env_cfg):
    """env.pose_action_range: u stands for first targets + r u; each step the chain moves towards it by
    at most 1/24 rad, and ``relative_action`` is the relative action that did it."""
    from dexndm.hand import constants as hc

    env = make_env(tiny_env_cfg, pose_action_range=0.3, randomization={"enabled": False})
    td = env.reset()
    first = env.control.target.copy()
    np.testing.assert_allclose(td["observation"][:, env.priv_layout.slice("pose_center")], first, atol=1e-6)
    u = torch.zeros(4, 16)
    u[:, 2], u[:, 5] = 1.0, -0.5
    for _ in range(10):
        before = env.control.target.copy()
        td["action"] = u
        td = env.step(td)["next"]
        rel = td["relative_action"].double().numpy()
        assert np.abs(rel).max() <= 1.0
        np.testing.assert_allclose(env.control.target, np.clip(before + rel / 24, hc.JOINT_LOWER, hc.JOINT_UPPER),
                                   atol=1e-6)
    want = np.clip(first + 0.3 * u.double().numpy(), hc.JOINT_LOWER, hc.JOINT_UPPER)
    np.testing.assert_allclose(env.control.target, want, atol=1e-6)     # 0.3 rad takes 7.2 steps: reached
    assert np.abs(rel[:, 2]).max() < 1e-4                                  # and held there
    env.close()


def test_observation_layouts_match_sources(tiny_env_cfg):
    env = make_env(tiny_env_cfg, randomization={"enabled": False})
    td = env.reset()
    td["action"] = torch.zeros(4, 16)
    td["action"][:, 1] = 1.0
    td = env.step(td)["next"]
    p, d = env.priv_layout, env.deploy_layout
    target = torch.as_tensor(env.control.target, dtype=torch.float32)
    torch.testing.assert_close(td["observation"][:, p.slice("target_history")][:, -16:], target)
    hist = td["policy_obs"][:, d.slice("proprio_history")].reshape(4, env.cfg.deploy_history, 2, 16)
    torch.testing.assert_close(hist[:, -1, 1], target)
    q = torch.as_tensor(env.hand.joint_positions(env.physics.qpos), dtype=torch.float32)
    assert (hist[:, -1, 0] - q).abs().max() < 0.006  # measured = true + DR-free encoder model
    torch.testing.assert_close(td["policy_obs"][:, d.slice("rotation_axis")], torch.tensor([[0, 0, 1.0]] * 4))
    assert (td["observation"][:, p.slice("contact_binary")].sum(1) >= 2).all()  # the object is held
    env.close()


def test_privileged_observation_carries_the_object_shift_from_its_start(tiny_env_cfg):
    """The drop test is measured from where the object started, so the oracle sees that shift; without
    the option (checkpoints from before it) the layout is the paper's list, unchanged."""
    env = make_env(tiny_env_cfg, domain={"physics": {"gravity": 0.0}}, randomization={"enabled": False})
    td = env.reset()
    p, oq = env.priv_layout, env.sampler.object_qpos
    assert p.fields[-1] == ("object_displacement", 3)
    torch.testing.assert_close(td["observation"][:, p.slice("object_displacement")], torch.zeros(4, 3))
    env.physics.qpos[:, oq:oq + 3] += np.array([0.0, 0.0, 0.03])    # lifted 3 cm out of the fingers
    td["action"] = torch.zeros(4, 16)
    shift = env.step(td)["next"]["observation"][:, p.slice("object_displacement")]
    expected = torch.as_tensor(env.physics.qpos[:, oq:oq + 3] - env.start_pos, dtype=torch.float32)
    torch.testing.assert_close(shift, expected)
    assert (shift[:, 2] > 0.025).all()
    env.close()
    plain = make_env(tiny_env_cfg, privileged_displacement=False)
    assert "object_displacement" not in dict(plain.priv_layout.fields)
    assert plain.priv_layout.dim == p.dim - 3
    plain.close()


def test_grasp_pose_observation_is_the_pose_term_reference(tiny_env_cfg):
    """With ``privileged_grasp_pose`` the oracle sees q_init, from which the pose term is measured:
    the term follows from the observed joint positions and the observed grasp pose (up to the
    observation's sensor noise)."""
    env = make_env(tiny_env_cfg, privileged_grasp_pose=True)
    p = env.priv_layout
    td = env.reset()
    seen = td["observation"][:, p.slice("grasp_joint_pos")]
    torch.testing.assert_close(seen, torch.as_tensor(env.q_init, dtype=torch.float32))
    td["action"] = torch.ones(4, 16)                                   # every joint moves away
    nxt = env.step(td)["next"]
    torch.testing.assert_close(nxt["observation"][:, p.slice("grasp_joint_pos")], seen)  # fixed over the episode
    q = nxt["observation"][:, p.slice("joint_pos_history")].reshape(4, -1, 16)[:, -1]
    expected = ((q - seen) ** 2).sum(-1).double().numpy()
    assert np.allclose(env._terms["pose"], expected, rtol=0.15) and (expected > 5e-3).all()
    assert "grasp_joint_pos" not in dict(make_env(tiny_env_cfg).priv_layout.fields)
    env.close()


def test_goal_mode_points_the_axis_at_the_goal(tiny_env_cfg):
    env = make_env(tiny_env_cfg, goal_mode=True)
    td = env.reset()
    axes = td["policy_obs"][:, env.deploy_layout.slice("rotation_axis")]
    torch.testing.assert_close(axes.norm(dim=1), torch.ones(4))
    assert not torch.allclose(axes[0], axes[1])
    env.close()


def test_target_domains_run_through_the_same_env(tiny_env_cfg):
    for domain in ("combined", "backlash", "latency_2step"):
        env = make_env(tiny_env_cfg, domain=domain)
        td = env.reset()
        td["action"] = torch.zeros(4, 16)
        td = env.step(td)["next"]
        assert torch.isfinite(td["observation"]).all()
        assert env.domain.name == domain
        if domain == "backlash":
            assert env.physics.nq == 32 + 7
        env.close()


def test_bad_config_is_refused_with_the_key(tiny_env_cfg):
    with pytest.raises(ValueError, match="num_env"):
        make_env(tiny_env_cfg, num_env=3)
    with pytest.raises(ValueError, match="object_names"):
        make_env(tiny_env_cfg, object_names=["cuboids/99"])
    with pytest.raises(ValueError, match="randomization.object_mass"):
        make_env(tiny_env_cfg, randomization={"object_mass": [0.05, 0.01]})


def test_dotted_overrides_change_only_what_they_name(tiny_env_cfg):
    import dataclasses

    from dexndm.sim.config import EnvConfig, with_overrides

    base = EnvConfig.from_dict(tiny_env_cfg)
    before = base.to_dict()
    out = with_overrides(before, ["drop_distance=0.1", "grasp.palm_blend=[0.8,1.0]", "grasp.allow_palm_contact=true"])
    expected = dataclasses.replace(base, drop_distance=0.1, grasp=dataclasses.replace(
        base.grasp, palm_blend=(0.8, 1.0), allow_palm_contact=True))
    assert EnvConfig.from_dict(out) == expected
    assert before == base.to_dict() and base.drop_distance != 0.1   # the input is not modified
    with pytest.raises(ValueError, match="grasp.squeez"):
        with_overrides(before, ["grasp.squeez=[0,1]"])
    with pytest.raises(ValueError, match="palm_blend"):
        with_overrides(before, ["grasp.palm_blend=[0.9,0.1]"])


def test_grasp_cache_falls_back_to_relaxed_grasps(tmp_path):
    """An impossible fingertip criterion (the object starts in the palm, which must stay free) still yields a cache,
    from the relaxed settings, and the file says so; without fallback it is a clear error."""
    from dexndm.sim import grasps as G
    from dexndm.sim import orientations as ori
    from dexndm.sim.domain import load_domain
    from dexndm.sim.objects import object_set

    shape = object_set("cuboids")[0]
    strict = G.GraspConfig(candidates=16, rounds=1, min_grasps=1, palm_blend=(1.0, 1.0), min_tip_contacts=4)
    dom, g = load_domain("nominal"), ori.gravity_directions("palm_up")[0]
    rows = G.ensure_cache(tmp_path, dom, shape, 0.8, "palm_up", g, cfg=strict)
    assert len(rows) >= 1
    with np.load(G.cache_path(tmp_path, shape, 0.8, "palm_up", strict, dom, g)) as data:
        assert bool(data["relaxed"])
    no_fallback = G.GraspConfig(candidates=16, rounds=1, min_grasps=1, max_shift=1e-6, fallback=False)
    with pytest.raises(RuntimeError, match="no stable grasp"):
        G.ensure_cache(tmp_path, dom, shape, 0.8, "palm_up", g, cfg=no_fallback)


def test_grasp_caches_are_not_shared_between_dynamics(tmp_path):
    """A grasp tested without gravity (or with other gains) must not be served to a run with gravity:
    the cache name changes with the domain's parameters and the gravity direction, not with its name."""
    import dataclasses as dc

    from dexndm.sim import grasps as G
    from dexndm.sim import orientations as ori
    from dexndm.sim.domain import load_domain
    from dexndm.sim.objects import object_set

    shape, cfg = object_set("cuboids")[0], G.GraspConfig()
    dom = load_domain("nominal")
    up, down = ori.gravity_directions("palm_up")[0], ori.gravity_directions("palm_down")[0]
    path = lambda d, g: G.cache_path(tmp_path, shape, 0.8, "palm_up", cfg, d, g)  # noqa: E731
    assert path(dom, up) != path(dc.replace(dom, gravity=0.0), up)
    assert path(dom, up) != path(dc.replace(dom, kp=dom.kp * 0.5), up)
    assert path(dom, up) != path(dom, down)
    assert path(dom, up) == path(dc.replace(dom, name="renamed", description="same physics"), up)


@pytest.mark.parametrize("max_sag, ends", [(0.02, True), (None, False)])
def test_sinking_along_gravity_ends_the_episode(tiny_env_cfg, max_sag, ends):
    """An object 2.5 cm lower along gravity (within drop_distance) is a drop only with max_sag set.
    Palm down, gravity off: 'lower' is away from the palm, into free space, where it stays."""
    env = make_env(tiny_env_cfg, domain={"physics": {"gravity": 0.0}}, randomization={"enabled": False},
                   max_sag=max_sag, wrist="palm_down")
    td = env.reset()
    oq = env.sampler.object_qpos
    env.physics.qpos[:, oq:oq + 3] += 0.025 * env.gravity_dir
    td["action"] = torch.zeros(env.batch_size[0], 16)
    out = env.step(td)["next"]
    assert bool(out["terminated"].all()) == ends
    env.close()


def test_gravity_curriculum_scales_gravity_of_envs_reset_along_the_ramp(tiny_env_cfg):
    env = make_env(tiny_env_cfg, gravity_start=0.0, gravity_ramp_steps=4)
    g = env.domain.gravity
    assert env.gravity_scale == 0.0
    assert np.allclose([m.opt.gravity for m in env.physics.models], 0.0)   # reset at step 0: no gravity
    td = env.reset()
    for _ in range(2):
        td["action"] = torch.zeros(env.batch_size[0], 16)
        td = env.step(td)["next"]
    assert env.gravity_scale == pytest.approx(0.5)
    env.reset()
    assert np.allclose([np.linalg.norm(m.opt.gravity) for m in env.physics.models], 0.5 * g)
    env.control_steps = 10                                                    # past the ramp: full gravity
    env.reset()
    for m, d in zip(env.physics.models, env.gravity_dir):
        np.testing.assert_allclose(m.opt.gravity, g * d)
    env.close()
    with pytest.raises(ValueError, match="gravity_start"):
        make_env(tiny_env_cfg, gravity_start=1.5)
