"""dexndm.collect: Chaos Box / free-hand replay, base waves and task-aware rollouts (DexNDM Sec. 3.3,
Sec. 5, Appendix C)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dexndm.collect import STRATEGIES, collect
from dexndm.collect import strategies as st
from dexndm.collect.cli import main as cli_main
from dexndm.collect.sources import SourceSequences
from dexndm.data.reader import TrajectoryFile
from dexndm.data.synthetic import random_trajectory, write_random_file
from dexndm.data.validate import validate
from dexndm.data.writer import TrajectoryWriter
from dexndm.hand import constants as hc

STEPS = 16


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_random_file(tmp_path_factory.mktemp("src") / "rollouts.h5", 6, seed=3, lengths=(8, 24))


def _all(path):
    with TrajectoryFile(path) as f:
        return [f.load(i) for i in f.indices], f.meta


def test_strategies_listed():
    assert STRATEGIES == ("chaos_box", "free_hand", "base_waves", "task_aware")


def test_source_matches_wrist(tmp_path):
    path = tmp_path / "src.h5"
    with TrajectoryWriter(path, domain={"name": "x"}, source={"kind": "synthetic"}, config={}) as w:
        for i in range(6):
            traj = random_trajectory(i, 8, optional=False)
            traj["gravity_dir"] = np.array([0, 0, 1.0] if i % 2 else [1.0, 0, 0], dtype=np.float32)
            w.append(traj)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        src = SourceSequences(path, np.array([0, 0, 1.0]))
    assert src.matched and sorted(src.candidates.tolist()) == [1, 3, 5]
    rng = np.random.default_rng(0)
    draws = [src.sample_index(rng) for _ in range(300)]
    assert set(draws) == {1, 3, 5} and min(np.bincount(draws)[[1, 3, 5]]) > 60
    with pytest.warns(UserWarning, match="no trajectory"):
        assert len(SourceSequences(path, np.array([0, 1.0, 0]))) == 6


def test_noise_sampler_proportion():
    rng = np.random.default_rng(0)
    base = np.tile(hc.CANONICAL_POSE, (5, 1))
    noisy = [st.noisy_replay(base, 0.5, 0.01, rng)[1] for _ in range(2000)]
    assert abs(np.mean(noisy) - 0.5) < 0.05
    assert not any(st.noisy_replay(base, 0.0, 0.01, rng)[1] for _ in range(50))


def test_chaos_box_replays_source(tmp_path, source):
    out = tmp_path / "chaos.h5"
    with pytest.warns(UserWarning):                      # synthetic gravity dirs never match palm_down
        summary = collect("chaos_box", out=out, episodes=12, num_envs=4, source_file=source,
                          episode_steps=STEPS, num_balls=8, seed=1)
    assert summary["episodes"] == 12 and summary["written"] + summary["blowups"] >= 12
    assert validate(out) == []
    trajs, meta = _all(out)
    assert len(trajs) == 12
    assert meta["source"]["kind"] == "collection" and meta["source"]["strategy"] == "chaos_box"
    assert len(meta["source"]["source_file_sha256"]) == 64 and meta["config"]["num_balls"] == 8
    noisy = 0
    with TrajectoryFile(source) as src:
        for tr in trajs:
            p = tr["params"]
            ref = src.load(p["source_index"])
            T = min(STEPS, len(ref["target"]))
            assert tr["length"] == T and tr["q"].shape == (T + 1, 16) and tr["success"]
            np.testing.assert_allclose(tr["initial_target"], hc.clamp_to_limits(ref["initial_target"]), atol=1e-6)
            np.testing.assert_allclose(tr["gravity_dir"], [0, 0, 1], atol=1e-6)
            want = hc.clamp_to_limits(ref["target"][:T].astype(np.float64)).astype(np.float32)
            if p["noisy"]:
                noisy += 1
                assert 0.005 < np.std(tr["target"] - want) < 0.02
            else:
                np.testing.assert_array_equal(tr["target"], want)
    assert 1 <= noisy <= 11
    assert np.abs(trajs[0]["q"][-1] - trajs[0]["q"][0]).max() > 1e-3     # the hand moved


def test_wave_spec_proportions():
    rng = np.random.default_rng(0)
    specs = [st.sample_wave_spec(rng) for _ in range(2000)]
    frac = {w: np.mean([s.wave == w for s in specs]) for w in st.WAVES}
    assert abs(frac["sine"] - 0.5) < 0.05 and abs(frac["square"] - 0.25) < 0.05
    assert abs(frac["noisy_square"] - 0.25) < 0.05
    assert not {s.joint for s in specs} & set(st.PIP_JOINTS)
    assert {s.joint for s in specs} == set(st.WAVE_JOINTS) and len(st.WAVE_JOINTS) == 13
    amp, omega = np.array([s.amplitude for s in specs]), np.array([s.omega for s in specs])
    assert 0.5 <= amp.min() and amp.max() <= 1.0 and 0.2 <= omega.min() and omega.max() <= 0.5
    for s in specs[:200]:
        offset = st.wave_targets(s, 400, 0.05, rng) - st.MID_RANGE
        assert np.abs(np.delete(offset, s.joint, axis=1)).max() == 0
        peak = np.abs(offset[:, s.joint]).max()
        assert peak <= s.amplitude + (0.05 if s.wave == "noisy_square" else 1e-9)
        room = min(hc.JOINT_UPPER[s.joint] - st.MID_RANGE[s.joint], s.amplitude)
        assert peak >= 0.4 * (room > 0.4) and (s.wave != "sine" or peak > room - 0.01)


def test_base_waves(tmp_path):
    out = tmp_path / "waves.h5"
    summary = collect("base_waves", out=out, episodes=8, num_envs=4, episode_steps=20, seed=2)
    assert summary["episodes"] == 8 and validate(out) == []
    trajs, meta = _all(out)
    assert meta["source"]["source_file_sha256"] is None and meta["config"]["num_balls"] == 0
    for tr in trajs:
        p = tr["params"]
        moved = np.flatnonzero(np.abs(tr["target"] - st.MID_RANGE.astype(np.float32)).max(axis=0) > 1e-6)
        assert moved.tolist() == [p["joint"]] and p["joint"] not in st.PIP_JOINTS
        assert np.abs(tr["target"] - st.MID_RANGE).max() <= 1.0 + 0.05
        np.testing.assert_allclose(tr["initial_target"], st.MID_RANGE, atol=1e-6)
        assert p["noisy"] == (p["wave"] == "noisy_square") and p["num_balls"] == 0


def test_free_hand_and_continue(tmp_path, source):
    out = tmp_path / "free.h5"
    with pytest.warns(UserWarning):
        assert cli_main(["free_hand", "--out", str(out), "--episodes", "3", "--envs", "4", "--source",
                         str(source), "--steps", "10"]) == 0
    first, meta = _all(out)
    assert len(first) == 3 and validate(out) == [] and meta["config"]["num_balls"] == 0
    assert all(t["params"]["num_balls"] == 0 and t["params"]["strategy"] == "free_hand" for t in first)
    with pytest.warns(UserWarning):
        summary = collect("free_hand", out=out, episodes=6, num_envs=4, source_file=source, episode_steps=10)
    assert summary["existing"] == 3 and summary["episodes"] == 6
    grown, _ = _all(out)
    assert len(grown) == 6 and validate(out) == []
    for a, b in zip(first, grown[:3]):
        np.testing.assert_array_equal(a["q"], b["q"])
        np.testing.assert_array_equal(a["target"], b["target"])


def test_replay_needs_source(tmp_path):
    with pytest.raises(ValueError, match="source_file"):
        collect("chaos_box", out=tmp_path / "x.h5", episodes=1, num_envs=1)
    with pytest.raises(ValueError, match="strategy"):
        collect("dance", out=tmp_path / "x.h5", episodes=1, num_envs=1)


# -- task_aware ---------------------------------------------------------------------------------

ORACLE = Path(__file__).resolve().parents[1] / "checkpoints/oracle/cuboids_palm_up_z_rot_weight1/last.pt"
TASK_STEPS = 24


def _task_env(tiny_env_cfg):
    return {k: v for k, v in tiny_env_cfg.items() if k in ("nthread", "object_names", "grasp_dir", "grasp",
                                                            "randomization")}


def _task(tiny_env_cfg, out, policy, episodes, **kw):
    args = dict(out=out, episodes=episodes, num_envs=4, policy=policy, object_set="cuboids", axes="+z",
                wrist="palm_down", episode_steps=TASK_STEPS, env=_task_env(tiny_env_cfg), progress=False)
    args.update(kw)
    return collect("task_aware", **args)


def _save_generalist_and_residual(d: Path, residual_bias: float) -> tuple[str, str]:
    from dexndm.models.generalist import GeneralistModule
    from dexndm.models.residual import ResidualModule
    from dexndm.sim.observations import deploy_layout

    torch.manual_seed(0)
    dim = deploy_layout().dim
    gen = GeneralistModule(hidden=8, blocks=1, stats={"mean": [0.0] * dim, "std": [1.0] * dim})
    torch.nn.init.zeros_(gen.net.mlp.out.weight)
    torch.nn.init.constant_(gen.net.mlp.out.bias, 0.2)        # a constant, gentle closing action
    res = ResidualModule(dynamics=torch.nn.Identity(), hidden=8, depth=1, max_residual=0.2)
    torch.nn.init.constant_(res.res.mlp[-1].bias, residual_bias)
    paths = []
    for module, name in ((gen, "gen.ckpt"), (res, "res.ckpt")):
        ckpt = {"state_dict": module.state_dict()}
        module.on_save_checkpoint(ckpt)
        torch.save(ckpt, d / name)
        paths.append(str(d / name))
    return paths[0], paths[1]


def test_task_aware_keeps_only_successes_and_resumes(tmp_path, tiny_env_cfg):
    out = tmp_path / "task.h5"
    first = _task(tiny_env_cfg, out, f"oracle:{ORACLE}", 3, object_pose=True)
    summary = _task(tiny_env_cfg, out, f"oracle:{ORACLE}", 6, object_pose=True)
    assert first["episodes"] == 3 and summary["existing"] == 3 and summary["episodes"] == 6 and summary["complete"]
    total = {k: first[k] + summary[k] for k in ("attempted", "succeeded", "dropped", "blowups")}
    assert total["dropped"] > 0                                  # palm down, this oracle drops some
    assert total["attempted"] == total["succeeded"] + total["dropped"] + total["blowups"]
    assert validate(out) == []
    trajs, meta = _all(out)
    assert meta["source"]["strategy"] == "task_aware" and meta["source"]["checkpoint_sha256"]
    assert meta["domain"]["name"] == "nominal" and meta["config"]["object_pose"] is True
    for tr in trajs:
        assert tr["success"] and tr["length"] == TASK_STEPS and tr["q"].shape == (TASK_STEPS + 1, 16)
        moved = np.linalg.norm(tr["object_pose"][:, :3] - tr["object_pose"][0, :3], axis=1)
        assert moved.max() <= 0.05                               # never out of the hand (drop_distance)
        np.testing.assert_allclose(tr["gravity_dir"], [0, 0, 1], atol=1e-6)
        np.testing.assert_allclose(tr["axis"], [0, 0, 1], atol=1e-6)
        assert tr["category"] == "cuboids" and tr["params"]["strategy"] == "task_aware"
        assert np.abs(tr["action"]).max() <= 1.0
    again = _task(tiny_env_cfg, out, f"oracle:{ORACLE}", 3, object_pose=True)
    assert again["written"] == 0 and again["episodes"] == 6
    grown, _ = _all(out)
    np.testing.assert_array_equal(grown[2]["q"], trajs[2]["q"])


def test_task_aware_records_what_the_hand_was_sent(tmp_path, tiny_env_cfg):
    """With a residual, target = clip(chain + residual): the chain from the actions, the constant
    residual max_residual * tanh(bias) on top."""
    gen, res = _save_generalist_and_residual(tmp_path, residual_bias=0.5)
    out = tmp_path / "res.h5"
    summary = _task(tiny_env_cfg, out, f"generalist:{gen}+residual:{res}", 2, wrist="palm_up")
    assert summary["episodes"] == 2 and validate(out) == []
    trajs, meta = _all(out)
    assert meta["source"]["residual_sha256"] and "+residual:" in meta["source"]["policy"]
    offset = 0.2 * np.tanh(0.5)
    for tr in trajs:
        chain = tr["initial_target"].astype(np.float64)
        for t in range(TASK_STEPS):
            chain = hc.clamp_to_limits(chain + tr["action"][t] / 24.0)
            np.testing.assert_allclose(tr["target"][t], hc.clamp_to_limits(chain + offset), atol=1e-5)
        assert "object_pose" not in tr or tr["object_pose"] is None
    with pytest.raises(Exception, match="cannot resume"):                       # another policy, same file
        _task(tiny_env_cfg, out, f"generalist:{gen}", 3, wrist="palm_up")


def test_task_aware_command_noise_and_failed_episodes(tmp_path, tiny_env_cfg):
    """command_noise_std perturbs what is sent (recorded as the target) around the chain; keep_failed
    writes dropped episodes up to the drop, marked unsuccessful."""
    gen, _ = _save_generalist_and_residual(tmp_path, residual_bias=0.0)
    out = tmp_path / "noisy.h5"
    env = {**_task_env(tiny_env_cfg), "drop_distance": 0.004}        # small: episodes end early
    summary = _task(tiny_env_cfg, out, f"generalist:{gen}", 6, wrist="palm_up", env=env, command_noise_std=0.05,
                    command_noise_prob=1.0, keep_failed=True)
    assert summary["episodes"] == 6 and validate(out) == []
    trajs, meta = _all(out)
    assert meta["config"]["command_noise_std"] == 0.05 and meta["config"]["keep_failed"] is True
    assert any(not tr["success"] and 2 <= tr["length"] < TASK_STEPS for tr in trajs), [tr["length"] for tr in trajs]
    # in rounds: each env's one episode per round, not the envs that drop soonest over and over
    rounds = [(tr["params"]["round"], tr["params"]["env"]) for tr in trajs]      # 4 envs: a round and a half
    assert len(set(rounds)) == 6 and {r for r, _ in rounds} == {0, 1} and all(0 <= i < 4 for _, i in rounds), rounds
    assert sum(r == 0 for r, _ in rounds) >= 3, rounds        # (an episode that blows up or ends at once is not kept)
    noise = []
    for tr in trajs:
        assert tr["params"]["noisy"] and tr["q"].shape == (tr["length"] + 1, 16)
        chain = tr["initial_target"].astype(np.float64)
        for t in range(tr["length"]):
            chain = hc.clamp_to_limits(chain + tr["action"][t] / 24.0)
            inside = (chain > hc.JOINT_LOWER + 0.2) & (chain < hc.JOINT_UPPER - 0.2)
            noise.append((tr["target"][t] - chain)[inside])
    noise = np.concatenate(noise)
    assert 0.04 < noise.std() < 0.06 and abs(noise.mean()) < 0.01, (noise.std(), noise.mean())
    with pytest.raises(ValueError, match="command_noise"):
        _task(tiny_env_cfg, tmp_path / "bad.h5", f"generalist:{gen}", 1, command_noise_std=-1.0)
    assert not (tmp_path / "bad.h5").exists()


def test_task_aware_bad_input(tmp_path, tiny_env_cfg):
    with pytest.raises(ValueError, match="policy="):
        _task(tiny_env_cfg, tmp_path / "a.h5", None, 1)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        _task(tiny_env_cfg, tmp_path / "a.h5", f"generalist:{tmp_path}/missing.ckpt", 1)
    with pytest.raises(ValueError, match="collect arguments"):
        _task(tiny_env_cfg, tmp_path / "a.h5", "zero", 1, env={"episode_steps": 3})
    assert not (tmp_path / "a.h5").exists()
    with pytest.raises(ValueError, match="task_aware options"):
        collect("base_waves", out=tmp_path / "b.h5", episodes=1, num_envs=1, policy="zero")
    assert cli_main(["task_aware", "--out", str(tmp_path / "c.h5"), "--episodes", "1", "--quiet"]) == 2


def test_task_aware_gives_up_after_max_attempts(tmp_path, tiny_env_cfg):
    env = {**_task_env(tiny_env_cfg), "drop_distance": 1e-4}      # every episode counts as a drop
    summary = _task(tiny_env_cfg, tmp_path / "none.h5", "zero", 2, env=env, max_attempts=5)
    assert summary["written"] == 0 and summary["attempted"] >= 5 and not summary["complete"]
    assert summary["success_ratio"] == 0.0


def test_task_env_from_a_grasp_preset_and_dotted_settings():
    from dexndm.collect.cli import task_env

    env = task_env("palm_rest", ["max_sag=null", "grasp.min_tip_contacts=3"], grasp_dir="/tmp/g")
    assert env["grasp"]["palm_blend"] == [0.8, 1.0] and env["grasp"]["allow_palm_contact"] is True
    assert env["grasp"]["min_tip_contacts"] == 3                  # the dotted setting wins over the preset
    assert env["max_sag"] is None and env["grasp_dir"] == "/tmp/g"
    assert task_env(None, []) == {}
    from dexndm.collect.cli import key_value_args
    assert key_value_args(["task_aware", "--env", "max_sag=null", "out=f.h5", "--env", "grasp.seed=2"]) == [
        "task_aware", "--env", "max_sag=null", "--out", "f.h5", "--env", "grasp.seed=2"]
    with pytest.raises(FileNotFoundError, match="presets: .*palm_rest"):
        task_env("palm_rst", [])
    with pytest.raises(ValueError, match="max_sagg"):
        task_env(None, ["max_sagg=0.1"])
