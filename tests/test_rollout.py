"""Oracle rollouts for BC (dexndm.rl.rollout, DexNDM Appendix C): only full-length episodes are kept."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dexndm.data.reader import TrajectoryFile
from dexndm.data.validate import validate
from dexndm.hand import constants as hc
from dexndm.rl.checkpoint import load_checkpoint, save_checkpoint
from dexndm.rl.ppo import train
from dexndm.rl.rollout import file_sha256, rollout_oracle
from tests.test_ppo import tiny_cfg

STEPS = 12


@pytest.fixture(scope="module")
def oracle(tmp_path_factory, tiny_env_cfg):
    """A real (1-iteration) oracle checkpoint trained on 12-step episodes."""
    out = tmp_path_factory.mktemp("oracle")
    env = dict(tiny_env_cfg, episode_steps=STEPS)
    train(tiny_cfg(env, out, iterations=1, tensorboard=False))
    return out / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def pose_oracle(tmp_path_factory, tiny_env_cfg):
    """The same, with pose actions (``env.pose_action_range``): rollouts must record relative actions."""
    out = tmp_path_factory.mktemp("pose_oracle")
    env = dict(tiny_env_cfg, episode_steps=STEPS, pose_action_range=0.3)
    train(tiny_cfg(env, out, iterations=1, tensorboard=False))
    return out / "checkpoints" / "last.pt"


def read_all(path) -> dict[int, dict]:
    with TrajectoryFile(path) as tf:
        return {i: traj for i, traj in tf.iter()}


@pytest.mark.parametrize("kind", ["oracle", "pose_oracle"])
def test_rollout_keeps_full_length_episodes_and_writes_a_valid_file(tmp_path, kind, request):
    oracle = request.getfixturevalue(kind)
    out = tmp_path / "roll.h5"
    report = rollout_oracle(oracle, out_path=out, num_envs=3, episodes=5, seed=0, privileged_obs=True)
    assert report["attempted"] == 5 and 0 < report["kept"] <= 5
    cat = report["per_category"]["cuboids"]
    assert cat["attempted"] == 5 and cat["success_ratio"] == pytest.approx(report["kept"] / 5)
    assert validate(out) == []

    with TrajectoryFile(out) as tf:
        assert tf.meta["source"] == {"kind": "policy", "checkpoint_sha256": file_sha256(oracle),
                                     "path": str(oracle.resolve())}
        assert tf.meta["domain"]["name"] == "nominal"
        assert tf.meta["config"]["episodes"] == 5
        P = sum(w for _, w in tf.meta["privileged_layout"]["fields"])
    trajs = read_all(out)
    assert len(trajs) == report["kept"] == report["total"]
    for traj in trajs.values():
        assert traj["length"] == STEPS and traj["success"]
        assert traj["q"].shape == (STEPS + 1, 16) and traj["target"].shape == (STEPS, 16)
        assert traj["object_pose"].shape == (STEPS + 1, 7) and traj["fingertip_state"].shape == (STEPS + 1, 4, 13)
        assert traj["privileged_obs"].shape == (STEPS, P)
        assert traj["category"] == "cuboids" and traj["object_id"] == "cuboids/00"
        params = traj["params"] if isinstance(traj["params"], dict) else json.loads(traj["params"])
        assert params["object_mass"] > 0 and params["scale"] > 0
        assert np.abs(traj["action"]).max() <= 1.0
        # a_t = clip(a_{t-1} + action_t / 24, joint limits): check where not clamped
        target, action = traj["target"].astype(np.float64), traj["action"].astype(np.float64)
        target = np.concatenate([traj["initial_target"][None].astype(np.float64), target])  # a_{-1}, a_0, ...
        expect = target[:-1] + action / 24.0
        inside = (expect > hc.JOINT_LOWER + 1e-4) & (expect < hc.JOINT_UPPER - 1e-4)
        assert inside.mean() > 0.5
        np.testing.assert_allclose(target[1:][inside], expect[inside], atol=1e-5)
        np.testing.assert_allclose(target[1:], np.clip(expect, hc.JOINT_LOWER, hc.JOINT_UPPER), atol=1e-5)
        # the hand moved under the policy
        assert not np.allclose(traj["q"][0], traj["q"][-1])


def test_episodes_that_drop_are_not_kept(tmp_path, oracle):
    # a 0.1 mm drop distance terminates every episode long before its 12 steps
    ckpt = load_checkpoint(oracle)
    config = json.loads(ckpt["config"])
    config["env"]["drop_distance"] = 1e-4
    ckpt["config"] = json.dumps(config, sort_keys=True)
    strict = save_checkpoint(tmp_path / "strict.pt", ckpt)
    out = tmp_path / "none.h5"
    report = rollout_oracle(strict, out_path=out, num_envs=2, episodes=4, seed=0)
    assert report["attempted"] == 4 and report["kept"] == 0
    assert report["per_category"]["cuboids"]["success_ratio"] == 0.0
    assert validate(out) == [] and read_all(out) == {}


def test_rerun_continues_the_file_with_new_episodes(tmp_path, oracle):
    out = tmp_path / "cont.h5"
    first = rollout_oracle(oracle, out_path=out, num_envs=2, episodes=3, seed=1)
    before = read_all(out)
    assert len(before) == first["kept"] > 0
    again = rollout_oracle(oracle, out_path=out, num_envs=2, episodes=3 + len(before), seed=1)
    assert again["existing"] == len(before) and again["attempted"] == 3
    assert again["seed"] != first["seed"]
    after = read_all(out)
    assert len(after) == len(before) + again["kept"] > len(before)
    for i, traj in before.items():
        for key in ("q", "target", "action", "object_pose"):
            np.testing.assert_array_equal(after[i][key], traj[key])
    # the continued run drew other episodes: no new trajectory repeats an earlier one
    old = [t["q"].tobytes() for t in before.values()]
    assert all(after[i]["q"].tobytes() not in old for i in after if i not in before)
    assert validate(out) == []
    # already at the target: nothing more is attempted
    done = rollout_oracle(oracle, out_path=out, num_envs=2, episodes=len(after), seed=1)
    assert done["attempted"] == 0 and done["total"] == len(after)


def test_mismatching_observation_layout_is_refused(tmp_path, oracle):
    ckpt = load_checkpoint(oracle)
    fields = ckpt["obs_layout"]["fields"]
    fields[0], fields[1] = fields[1], fields[0]          # same width, another order
    fields[0] = ["target_history_renamed", fields[0][1]]
    bad = save_checkpoint(tmp_path / "bad.pt", ckpt)
    out = tmp_path / "never.h5"
    with pytest.raises(ValueError, match="observation layout"):
        rollout_oracle(bad, out_path=out, num_envs=2, episodes=2, seed=0)
    assert not out.exists()


def test_rollout_app_composes_and_merges_several_oracles(tmp_path, oracle):
    import shutil

    from hydra import compose, initialize_config_module

    from dexndm.apps import rollout as app
    from dexndm.conf import register

    second = tmp_path / "second.pt"
    shutil.copy(oracle, second)
    out = tmp_path / "bc.h5"
    register()
    with initialize_config_module(config_module="dexndm.conf", version_base=None):
        cfg = compose(config_name="rollout", overrides=[
            f"checkpoints=[{oracle},{second}]", "episodes=2", "num_envs=2", f"out={out}", "axes=+z"])
    result = app.run(cfg)
    kept = sum(r["kept"] for r in result["reports"])
    assert [r["attempted"] for r in result["reports"]] == [2, 2]
    assert validate(out) == []
    with TrajectoryFile(out) as tf:
        assert len(tf) == kept
        assert tf.meta["source"]["kind"] == "merge" and len(tf.meta["source"]["inputs"]) == 2
    again = app.run(cfg)                                        # re-run: continues the parts, rebuilds out
    assert [r["attempted"] for r in again["reports"]] == [2 - r["kept"] for r in result["reports"]]
    assert len(read_all(out)) == sum(r["total"] for r in again["reports"]) >= kept
