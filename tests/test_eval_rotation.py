"""dexndm eval: policy specs, the rotation evaluation runner and its aggregation (DexNDM Sec. 4.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dexndm.eval import policies as P
from dexndm.eval import rotation as R
from dexndm.hand import constants as hc
from dexndm.models.generalist import GeneralistModule
from dexndm.models.residual import ResidualModule
from dexndm.sim import make_env, quat
from dexndm.sim.metrics import EpisodeTracker
from dexndm.sim.observations import deploy_layout

ORACLE = Path(__file__).resolve().parents[1] / "checkpoints/oracle/cuboids_palm_up_z_rot_weight1/last.pt"
STEPS = 12


def save_generalist(path: Path, seed: int = 0) -> Path:
    """A tiny GeneralistModule checkpoint (random weights: it moves the hand)."""
    torch.manual_seed(seed)
    dim = deploy_layout().dim
    module = GeneralistModule(hidden=8, blocks=1, stats={"mean": [0.0] * dim, "std": [1.0] * dim})
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return path


def save_residual(path: Path, bias: float = 0.0) -> Path:
    """A ResidualModule checkpoint whose output is the constant max_residual * tanh(bias)."""
    module = ResidualModule(dynamics=torch.nn.Identity(), hidden=8, depth=1, max_residual=0.2)
    torch.nn.init.constant_(module.res.mlp[-1].bias, bias)
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval_ckpts")
    return {"gen": str(save_generalist(d / "gen.ckpt")), "res0": str(save_residual(d / "res0.ckpt", 0.0)),
            "res": str(save_residual(d / "res.ckpt", 1.0))}


@pytest.fixture(scope="module")
def env_extra(tiny_env_cfg):
    """EnvConfig fields other than those the conditions set."""
    drop = {"num_envs", "seed", "wrist", "axes", "object_set"}
    return {**{k: v for k, v in tiny_env_cfg.items() if k not in drop}, "episode_steps": STEPS}


def _eval(policies, env_extra, **kw):
    args = dict(object_sets=["cuboids"], axes=["+z"], wrists=["palm_up"], seeds=[0, 1], episodes=3, num_envs=3,
                env=env_extra)
    args.update(kw)
    return R.evaluate(policies, **args)


# -- specs ------------------------------------------------------------------------------------

def test_parse_specs():
    assert P.parse_policy("zero") == P.PolicySpec("zero")
    assert P.parse_policy("oracle:a/b.pt") == P.PolicySpec("oracle", "a/b.pt")
    spec = P.parse_policy("generalist:g.ckpt+residual:r.ckpt")
    assert (spec.kind, spec.checkpoint, spec.residual) == ("generalist", "g.ckpt", "r.ckpt")
    assert str(spec) == "generalist:g.ckpt+residual:r.ckpt" and P.parse_policy(str(spec)) == spec
    assert P.parse_policy({"kind": "generalist", "checkpoint": "g.ckpt"}) == P.PolicySpec("generalist", "g.ckpt")
    named = P.parse_policies(["zero", "zero", "generalist:g+residual:r"])
    assert list(named) == ["zero", "zero_2", "generalist+residual"]
    named = P.parse_policies({"direct": "generalist:g", "dexndm": "generalist:g+residual:r"})
    assert list(named) == ["direct", "dexndm"]


@pytest.mark.parametrize("bad, match", [
    ("dance", "unknown policy kind"), ("oracle", "needs a checkpoint"), ("oracle:", "needs a path"),
    ("generalist:g+residual:", "needs a path"), ("oracle:a.pt+residual:r.ckpt", "not a 'oracle'"),
    ("zero:x", "takes no checkpoint"), ({"kind": "zero", "path": "x"}, "unknown keys"), ("", "bad policy spec"),
])
def test_bad_specs(bad, match):
    with pytest.raises(ValueError, match=match):
        P.parse_policy(bad)


def test_missing_and_foreign_checkpoints(tmp_path, ckpts):
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        P.load_policy(f"generalist:{tmp_path}/nope.ckpt")
    with pytest.raises(FileNotFoundError, match="residual checkpoint"):
        P.load_policy(f"generalist:{ckpts['gen']}+residual:{tmp_path}/nope.ckpt")
    with pytest.raises(ValueError, match="not a dexndm generalist checkpoint"):
        P.load_policy(f"generalist:{ORACLE}")
    with pytest.raises(Exception, match="oracle checkpoint"):
        P.load_policy(f"oracle:{ckpts['gen']}")


def test_policies_refuse_other_layouts(tiny_env_cfg, ckpts):
    env = make_env(tiny_env_cfg, privileged_history=2, deploy_history=5)
    try:
        with pytest.raises(ValueError, match="privileged observation"):
            P.load_policy(f"oracle:{ORACLE}").check_env(env)
        with pytest.raises(ValueError, match="deploy_history"):
            P.load_policy(f"generalist:{ckpts['gen']}").check_env(env)
    finally:
        env.close()


def test_residual_command_is_deploy_policy_command(tiny_env_cfg, ckpts):
    """The hand gets exactly DeployPolicy's command; the chain keeps the base target."""
    pol = P.load_policy(f"generalist:{ckpts['gen']}+residual:{ckpts['res']}")
    env = make_env(tiny_env_cfg)
    try:
        td = env.reset()
        for _ in range(3):
            prev = torch.as_tensor(env.control.target, dtype=torch.float32)
            q = P.GeneralistPolicy.last_q(td["policy_obs"], env)
            with torch.no_grad():
                target, command = pol.policy(td["policy_obs"], q, prev)
            td = env.step(pol.step_input(td, env))["next"]
            np.testing.assert_allclose(env.control.target, target.numpy(), atol=1e-5)
            np.testing.assert_allclose(env.control.sent, command.numpy(), atol=1e-5)
        off = np.clip(env.control.target + 0.2 * np.tanh(1.0), hc.JOINT_LOWER, hc.JOINT_UPPER)
        np.testing.assert_allclose(env.control.sent, off, atol=1e-5)      # the constant residual was applied
    finally:
        env.close()


# -- metrics and aggregation ------------------------------------------------------------------

def test_known_spin_rates_give_known_metrics():
    """An object spun at a known rate: RotR, radians, RotP and survival angle as computed by hand."""
    dt, steps = 0.05, 40
    tr = EpisodeTracker(2, episode_steps=80, dt=dt)
    axis = np.array([[0, 0, 1.0], [0, 0, 1.0]])
    w = np.array([[0, 0, 0.5], [1.0, 0, 0]])             # env 0: 0.5 rad/s about the axis; env 1: 1 rad/s across it
    for _ in range(steps):
        tr.step(w, axis)
    m = tr.finish(np.ones(2, bool), np.zeros(2, bool), 0.1 * np.pi)
    np.testing.assert_allclose(m["rot_rad"], [0.5 * steps * dt, 0.0])
    np.testing.assert_allclose(m["rot_r"], [0.5 * steps, 0.0])
    np.testing.assert_allclose(m["rotp"], [0.0, 1.0])
    np.testing.assert_allclose(m["survival_angle"], [1.0, 2.0])
    np.testing.assert_allclose(m["ttf"], [0.5, 0.5])


def test_aggregate_objects_then_seeds():
    recs = {0: [{"object": "a", "rot_rad": 1.0}, {"object": "a", "rot_rad": 3.0}, {"object": "b", "rot_rad": 5.0}],
            1: [{"object": "a", "rot_rad": 1.0}, {"object": "b", "rot_rad": 2.0}]}
    for seed in recs.values():
        for r in seed:
            r.update({m: 0.0 for m in R.METRICS if m != "rot_rad"})
    agg = R.aggregate(recs)
    assert agg["per_seed"]["0"]["rot_rad"] == pytest.approx(3.5)       # mean(mean(1, 3), 5), not mean(1, 3, 5)
    assert agg["per_seed"]["1"]["rot_rad"] == pytest.approx(1.5)
    assert agg["mean"]["rot_rad"] == pytest.approx(2.5) and agg["std"]["rot_rad"] == pytest.approx(1.0)
    assert agg["episodes"] == {"0": 3, "1": 2}


def test_recorded_metrics_match_the_object_trajectory(tiny_env_cfg, env_extra):
    """rot_rad equals the object's rotation about the axis, read from its pose each step;
    TTF equals the episode's steps over episode_steps."""
    pol = P.load_policy(f"oracle:{ORACLE}")
    env = make_env({**env_extra, **pol.env_requirements(), "wrist": "palm_up", "axes": "+z", "object_set": "cuboids"},
                   num_envs=3, seed=0)
    try:
        recs = R.run_episodes(pol, env, 3, seed=7)
        env.set_seed(R.round_seed(7, 0), static_seed=True)
        td = env.reset()
        oq = env.sampler.object_qpos
        prev, rot = env.physics.qpos[:, oq + 3:oq + 7].copy(), np.zeros(3)
        length, alive = np.zeros(3), np.ones(3, bool)
        for _ in range(STEPS):
            td = env.step(pol.step_input(td, env))["next"]
            cur = quat.normalize(env.physics.qpos[:, oq + 3:oq + 7].copy())
            rot += alive * (quat.rotation_vector(prev, cur) * env.axis).sum(-1)
            length += alive
            alive &= ~td["episode_ended"].reshape(3).numpy()
            prev = cur
    finally:
        env.close()
    np.testing.assert_allclose([r["rot_rad"] for r in recs], rot, atol=1e-4)
    np.testing.assert_allclose([r["ttf"] for r in recs], length / STEPS, atol=1e-6)
    np.testing.assert_allclose([r["ttf_s"] for r in recs], length * 0.05, atol=1e-6)
    assert np.abs(rot).max() > 0.05                    # the oracle turned something


def test_seeds_aggregate_and_are_deterministic(env_extra):
    a = _eval(["zero", f"oracle:{ORACLE}"], env_extra, seeds=[0, 1, 2], episodes=4)
    assert [r["policy"] for r in a["results"]] == ["zero", "oracle"]
    for row in a["results"]:
        assert row["episodes"] == {"0": 4, "1": 4, "2": 4}
        for m in R.METRICS:
            vals = [row["per_seed"][s][m] for s in ("0", "1", "2")]
            assert row["mean"][m] == pytest.approx(np.mean(vals)) and row["std"][m] == pytest.approx(np.std(vals))
    oracle = a["results"][1]
    assert len({oracle["per_seed"][s]["rot_rad"] for s in ("0", "1", "2")}) == 3      # seeds differ
    assert a["overall"]["oracle"]["rot_rad"]["mean"] == pytest.approx(oracle["mean"]["rot_rad"])
    b = _eval([f"oracle:{ORACLE}"], env_extra, seeds=[1], episodes=4)
    assert b["results"][0]["per_seed"]["1"] == oracle["per_seed"]["1"]          # same seed, same numbers


def test_zero_residual_equals_no_residual(env_extra, ckpts):
    gen = f"generalist:{ckpts['gen']}"
    res = _eval({"base": gen, "zero_res": f"{gen}+residual:{ckpts['res0']}", "res": f"{gen}+residual:{ckpts['res']}"},
                env_extra)
    base, zero_res, res_ = res["results"]
    assert base["per_seed"] == zero_res["per_seed"]
    assert base["per_seed"] != res_["per_seed"]                     # a real residual changes what happens
    assert res["policies"]["res"]["residual_sha256"] and res["policies"]["base"]["residual"] is None


def test_conditions_and_protocols(env_extra):
    assert R.protocol_lists("table5")["wrists"] == ["palm_up", "palm_down", "thumb_up", "thumb_down", "base_up",
                                                    "base_down"]
    assert R.protocol_lists("table4", axes=["z"])["axes"] == ["z"]
    with pytest.raises(ValueError, match="unknown protocol"):
        R.protocol_lists("table9")
    with pytest.raises(ValueError, match="no wrists"):
        R.protocol_lists(None, ["cuboids"], ["z"], None)
    with pytest.raises(ValueError, match="unknown axis group"):
        R.Condition("nominal", "cuboids", "w", "palm_up")
    assert R.Condition("nominal", "cuboids", "goal", "palm_up").env_overrides()["goal_mode"] is True
    assert R.Condition("nominal", "cuboids", "diagonal", "palm_up").env_overrides()["axes"] == R.DIAGONAL_AXES
    with pytest.raises(ValueError, match="set by the conditions"):
        _eval(["zero"], {**env_extra, "wrist": "palm_down"})
    with pytest.raises(ValueError, match="unknown keys"):
        _eval(["zero"], {**env_extra, "episode_stepz": 3})


def test_an_oracle_fixes_the_env_it_is_evaluated_in_and_conflicts_are_refused():
    """An oracle trained before the displacement observation is evaluated in an env that builds its
    layout; two policies needing different layouts cannot share an env."""
    old = P.load_policy(f"oracle:{ORACLE}")
    assert old.env_requirements() == {"privileged_history": 3, "privileged_displacement": False,
                                      "privileged_grasp_pose": False, "pose_action_range": None}

    class NeedsDisplacement(P.Policy):
        def env_requirements(self):
            return {"privileged_displacement": True}

    assert R.policy_env_requirements({"a": old, "b": P.load_policy("zero")})["privileged_displacement"] is False
    with pytest.raises(ValueError, match="separate runs"):
        R.policy_env_requirements({"old": old, "new": NeedsDisplacement(P.parse_policies(["zero"])["zero"])})


def test_a_pose_action_oracle_needs_a_pose_env_and_relative_policies_refuse_one(tmp_path, tiny_env_cfg, ckpts):
    from dexndm.rl.ppo import train
    from tests.test_ppo import tiny_cfg

    train(tiny_cfg({**tiny_env_cfg, "pose_action_range": 0.3}, tmp_path, iterations=1, tensorboard=False))
    pose = P.load_policy(f"oracle:{tmp_path / 'checkpoints' / 'last.pt'}")
    assert pose.env_requirements()["pose_action_range"] == 0.3
    with pytest.raises(ValueError, match="separate runs"):
        R.policy_env_requirements({"pose": pose, "zero": P.load_policy("zero")})
    env = make_env(tiny_env_cfg, pose_action_range=0.3)
    plain = make_env(tiny_env_cfg)
    try:
        pose.check_env(env)
        with pytest.raises(ValueError, match="pose_action_range"):
            pose.check_env(plain)
        for relative in (P.load_policy("zero"), P.load_policy(f"generalist:{ckpts['gen']}")):
            with pytest.raises(ValueError, match="set it to null"):
                relative.check_env(env)
    finally:
        env.close()
        plain.close()
