"""PPO oracle training (dexndm.rl): learning step, logs, exact resume, checkpoints as data, the app."""

from __future__ import annotations

import csv
import os
import signal

import numpy as np
import pytest
import torch

from dexndm.files import file_sha256
from dexndm.hand import constants as hc
from dexndm.rl.checkpoint import FORMAT, CheckpointError, lineage_frames, load_checkpoint, load_oracle, save_checkpoint
from dexndm.rl.config import PPOConfig
from dexndm.rl.loss import AdaptiveLR, gaussian_kl
from dexndm.rl.normalizer import RunningNorm
from dexndm.rl.ppo import PPOTrainer, train
from dexndm.sim.reward import TERMS

TINY_PPO = {"horizon": 8, "num_minibatches": 2, "epochs": 2, "hidden": [32, 32]}


def tiny_cfg(env_cfg: dict, out_dir, iterations: int, **run) -> dict:
    frames = env_cfg["num_envs"] * TINY_PPO["horizon"] * iterations
    return {"env": dict(env_cfg), "ppo": dict(TINY_PPO), "out_dir": str(out_dir), "total_frames": frames,
            "progress": False, "print_every": 0, **run}


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_ppo_updates_the_policy_and_logs_every_reward_term(tmp_path, tiny_env_cfg):
    trainer = PPOTrainer(tiny_cfg(tiny_env_cfg, tmp_path, iterations=2))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    try:
        summary = trainer.run()
    finally:
        trainer.close()
    after = trainer.model.state_dict()
    assert summary["iterations"] == 2 and summary["frames"] == 2 * 4 * 8
    for name in ("actor_trunk.0.weight", "mu.weight", "value_head.weight", "log_std"):
        assert not torch.equal(before[name], after[name]), f"{name} did not change"
    assert after["obs_norm.count"] == 2 * 4 * 8

    rows = read_csv(tmp_path / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    for term in TERMS:
        assert all(np.isfinite(float(r[f"reward/{term}"])) for r in rows), term
    assert float(rows[-1]["schedule/lr"]) > 0 and float(rows[-1]["perf/collect_fps"]) > 0

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {f"reward/{t}" for t in TERMS} <= tags
    assert {"policy/kl", "schedule/lr", "loss/critic", "schedule/reward_alpha", "perf/update_fps"} <= tags


def test_resume_continues_exactly_like_the_uninterrupted_run(tmp_path, tiny_env_cfg):
    tiny_env_cfg = {**tiny_env_cfg, "episode_steps": 12}   # staggered cuts and full episodes inside the run
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(tiny_cfg(tiny_env_cfg, straight, iterations=4, checkpoint_every=2))
    train(tiny_cfg(tiny_env_cfg, split, iterations=2, checkpoint_every=2))      # "interrupted" after 2
    train(tiny_cfg(tiny_env_cfg, split, iterations=4, checkpoint_every=2))      # resume=auto picks last.pt

    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    assert a["counters"] == b["counters"] and a["counters"]["iteration"] == 4
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=1e-6, msg=key)
    assert a["schedule"] == b["schedule"]
    rows_a, rows_b = read_csv(straight / "metrics.csv"), read_csv(split / "metrics.csv")
    assert [r["iteration"] for r in rows_b] == ["1", "2", "3", "4"]
    assert [r["reward/mean"] for r in rows_a] == [r["reward/mean"] for r in rows_b]


def test_sigterm_checkpoints_the_current_iteration_and_the_resume_goes_on(tmp_path, tiny_env_cfg, monkeypatch):
    """A stop at an iteration that is not a boundary keeps that iteration; a stop on a boundary resumes exactly."""
    tiny_env_cfg = {**tiny_env_cfg, "episode_steps": 12}
    iterate = PPOTrainer.iterate

    def stop_at(iteration):
        def patched(self):
            row = iterate(self)
            if self.iteration == iteration:
                os.kill(os.getpid(), signal.SIGTERM)        # delivered to this (main) thread at once
            return row
        return patched

    handler = signal.getsignal(signal.SIGTERM)
    straight, split, odd = tmp_path / "straight", tmp_path / "split", tmp_path / "odd"
    train(tiny_cfg(tiny_env_cfg, straight, iterations=4, checkpoint_every=2))
    monkeypatch.setattr(PPOTrainer, "iterate", stop_at(2))
    summary = train(tiny_cfg(tiny_env_cfg, split, iterations=4, checkpoint_every=2))
    assert summary["stopped_by"] == "SIGTERM" and summary["iterations"] == 2
    assert signal.getsignal(signal.SIGTERM) is handler          # the previous handler is back
    monkeypatch.setattr(PPOTrainer, "iterate", iterate)
    assert train(tiny_cfg(tiny_env_cfg, split, iterations=4, checkpoint_every=2))["stopped_by"] is None
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (straight, split))
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=1e-6, msg=key)

    monkeypatch.setattr(PPOTrainer, "iterate", stop_at(1))     # not a boundary (checkpoint_every=3)
    assert train(tiny_cfg(tiny_env_cfg, odd, iterations=3, checkpoint_every=3))["iterations"] == 1
    assert load_checkpoint(odd / "checkpoints" / "last.pt")["counters"]["iteration"] == 1
    monkeypatch.setattr(PPOTrainer, "iterate", iterate)
    train(tiny_cfg(tiny_env_cfg, odd, iterations=3, checkpoint_every=3))
    assert [r["iteration"] for r in read_csv(odd / "metrics.csv")] == ["1", "2", "3"]


def test_resume_refuses_a_changed_config(tmp_path, tiny_env_cfg):
    train(tiny_cfg(tiny_env_cfg, tmp_path, iterations=1))
    cfg = tiny_cfg(tiny_env_cfg, tmp_path, iterations=2)
    cfg["ppo"]["lr"] = 1e-3
    with pytest.raises(ValueError, match="ppo.lr"):
        PPOTrainer(cfg)


def test_checkpoint_is_data_and_carries_what_deploy_needs(tmp_path, tiny_env_cfg):
    train(tiny_cfg(tiny_env_cfg, tmp_path, iterations=1))
    path = tmp_path / "checkpoints" / "last.pt"
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT
    assert raw["joint_order"] == list(hc.JOINT_NAMES)
    names = [name for name, _ in raw["obs_layout"]["fields"]]
    assert names[0] == "joint_pos_history" and "rotation_axis" in names
    assert sum(w for _, w in raw["obs_layout"]["fields"]) == raw["obs_dim"]
    assert raw["action_scale"] == pytest.approx(1 / 24) and raw["control_rate_hz"] == pytest.approx(20.0)
    assert raw["obs_norm"]["count"] == 4 * 8
    torch.testing.assert_close(raw["obs_norm"]["mean"], raw["model"]["obs_norm.mean"])
    var = raw["obs_norm"]["var"]
    assert var.min() >= 0 and not torch.equal(var, torch.ones_like(var))
    assert isinstance(raw["rng"]["env"], str) and raw["counters"]["env0_resets"] >= 1

    model, meta = load_oracle(path)
    obs = torch.randn(5, raw["obs_dim"])
    action = model.act(obs)
    assert action.shape == (5, 16) and action.abs().max() <= 1.0
    assert meta["obs_layout"].dim == raw["obs_dim"]


class NotData:
    """Anything that needs unpickling code to load."""


def test_torch_threads_hold_during_the_run_and_are_restored(tmp_path, tiny_env_cfg, monkeypatch):
    seen = []
    iterate = PPOTrainer.iterate
    monkeypatch.setattr(PPOTrainer, "iterate", lambda self: (seen.append(torch.get_num_threads()), iterate(self))[1])
    before = torch.get_num_threads()
    wanted = 1 if before > 1 else 2
    train(tiny_cfg(tiny_env_cfg, tmp_path, iterations=2, torch_threads=wanted))
    assert seen == [wanted, wanted] and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="torch_threads must be null"):
        PPOTrainer(tiny_cfg(tiny_env_cfg, tmp_path / "bad", iterations=1, torch_threads=0))


def test_pickled_checkpoints_are_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"format": FORMAT, "x": NotData()}, bad)
    with pytest.raises(CheckpointError, match="pickled Python objects") as err:
        load_checkpoint(bad)
    assert "weights_only" in str(err.value) and "NotData" in str(err.value)
    with pytest.raises(TypeError, match=r"checkpoint\['x'\] is a NotData"):
        save_checkpoint(tmp_path / "never.pt", {"x": NotData()})
    assert not (tmp_path / "never.pt").exists()
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a dexndm oracle checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(FileNotFoundError, match="train_oracle"):
        load_checkpoint(tmp_path / "missing.pt")


def test_running_norm_matches_whole_batch_statistics():
    norm = RunningNorm(3)
    data = torch.randn(100, 3, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1]) + 2.0
    for chunk in data.split([7, 50, 43]):
        norm.update(chunk)
    torch.testing.assert_close(norm.mean, data.mean(0))
    torch.testing.assert_close(norm.var, data.var(0, unbiased=False))
    y = norm.normalize(data.float())
    torch.testing.assert_close(norm.denormalize(y), data.float(), atol=1e-4, rtol=1e-4)


def test_adaptive_lr_and_gaussian_kl():
    sched = AdaptiveLR(1e-3, kl_target=0.02, min_lr=1e-4, max_lr=2e-3)
    assert sched.update(0.1) == pytest.approx(1e-3 / 1.5)
    assert sched.update(0.02) == pytest.approx(1e-3 / 1.5)
    assert sched.update(0.0) == pytest.approx(1e-3) and sched.update(0.0) == pytest.approx(1.5e-3)
    assert sched.update(0.0) == pytest.approx(2e-3)
    loc, scale = torch.zeros(4, 16), torch.ones(4, 16)
    assert gaussian_kl(loc, scale, loc, scale).abs().max() < 1e-6
    kl = gaussian_kl(loc, scale, loc + 1.0, scale)
    torch.testing.assert_close(kl, torch.full((4,), 8.0))


def test_ppo_config_rejects_unknown_and_bad_values():
    with pytest.raises(ValueError, match="unknown keys.*horizn"):
        PPOConfig.from_dict({"horizn": 8})
    with pytest.raises(ValueError, match="lr_schedule"):
        PPOConfig.from_dict({"lr_schedule": "cosine"})


def test_train_oracle_app_composes_and_runs(tmp_path, grasp_dir):
    from hydra import compose, initialize_config_module

    from dexndm.apps import train_oracle
    from dexndm.conf import register

    register()
    with initialize_config_module(config_module="dexndm.conf", version_base=None):
        cfg = compose(config_name="train_oracle", overrides=[
            "task=cuboids", "env.wrist=palm_up", "env.axes=+z", "env.num_envs=4", f"env.grasp_dir={grasp_dir}",
            "env.object_names=[cuboids/00]", "env.randomization.scale_bins=1", "env.grasp.candidates=32",
            "ppo.horizon=8", "ppo.hidden=[32]", "ppo.num_minibatches=2", "total_frames=64", f"out_dir={tmp_path}",
            "progress=false", "device=auto"])
    summary = train_oracle.run(cfg)
    assert summary["iterations"] == 2
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["counters"]["frames"] == 64
    assert len(read_csv(tmp_path / "metrics.csv")) == 2


def composed_env(*overrides: str):
    """The ``env`` node of the real ``train_oracle`` config with ``overrides``."""
    from hydra import compose, initialize_config_module

    from dexndm.conf import register

    register()
    with initialize_config_module(config_module="dexndm.conf", version_base=None):
        return compose(config_name="train_oracle", overrides=["out_dir=x", *overrides]).env


def test_reward_presets_compose_onto_the_env_reward():
    from dexndm.sim.reward import RewardConfig

    paper = composed_env().reward
    rotation = composed_env("reward=rotation", "env.reward.drop_penalty=7").reward
    assert paper == RewardConfig().__dict__ | {"schedule_targets": ["rot", "offaxis"]}
    assert rotation.alive_bonus == 0.0 and rotation.work == 0.0 and list(rotation.schedule_targets) == []
    assert rotation.drop_penalty == 7 and rotation.rot_clip == 1.0     # command-line overrides win
    assert rotation.clip_backward is False


def test_grasp_presets_compose_onto_the_env_grasp():
    from dexndm.sim.grasps import GraspConfig

    assert GraspConfig(**composed_env().grasp) == GraspConfig()
    palm = GraspConfig(**composed_env("grasp=palm_rest", "env.grasp.min_tip_contacts=3").grasp)
    assert palm.allow_palm_contact and palm.palm_blend == (0.8, 1.0) and palm.min_tip_contacts == 3
    assert palm.key() != GraspConfig().key()          # its own grasp caches
    hard = GraspConfig(**composed_env("grasp=hard_draws").grasp)
    assert (hard.mass, hard.friction, hard.hold_steps) == (0.05, 0.4, 80) and hard.key() != GraspConfig().key()


@pytest.mark.parametrize("preset", ["hard_draws", "palm_rest"])
def test_grasp_presets_read_outside_hydra_give_the_composed_grasp(preset):
    """``eval_oracle.py --grasp`` reads the preset file; it must land where ``grasp=PRESET`` lands."""
    from omegaconf import OmegaConf

    from dexndm.sim.config import EnvConfig, grasp_preset_overrides, with_overrides

    by_file = with_overrides(EnvConfig().to_dict(), grasp_preset_overrides(preset))["grasp"]
    by_hydra = OmegaConf.to_container(composed_env(f"grasp={preset}").grasp)
    assert by_file == by_hydra and by_file != EnvConfig().to_dict()["grasp"]
    with pytest.raises(ValueError, match="presets in dexndm/conf/grasp"):
        grasp_preset_overrides("hard_draw")


def test_the_gait_recipe_is_the_long_command_line_it_replaces():
    from hydra import compose, initialize_config_module

    from dexndm.conf import register

    register()
    task = ["task=cylinders", "env.wrist=palm_up", "env.axes=+z", "out_dir=x"]
    long = ["env.num_envs=1024", "total_frames=50000000", "checkpoint_every=25", "reward=rotation", "env.max_sag=null",
            "env.reward.drop_penalty=25", "env.reward.position=10", "env.reward.tip_contact=0.2", "grasp=hard_draws"]
    with initialize_config_module(config_module="dexndm.conf", version_base=None):
        by_recipe = compose(config_name="train_oracle", overrides=[*task, "recipe=gait", "env.reward.position=5"])
        by_hand = compose(config_name="train_oracle", overrides=[*task, *long, "env.reward.position=5"])
        default = compose(config_name="train_oracle", overrides=task)
        drift = compose(config_name="train_oracle", overrides=[*task, "recipe=gait_drift", "env.reward.position=5"])
    assert by_recipe == by_hand                            # and command-line keys still win over the recipe
    assert by_recipe.env.reward.position == 5 and by_recipe.env != default.env
    by_recipe.env.reward.drift = 0.03                      # gait_drift is gait plus the drift penalty, nothing else
    assert drift == by_recipe and default.env.reward.drift == 0.0


@pytest.mark.parametrize("app", ["eval", "pipeline"])
def test_grasp_presets_reach_the_env_of_eval_and_pipeline(app):
    """A policy trained from palm-resting grasps is evaluated (and adapted) from the same grasps; the
    pipeline's default is the released generalist's (palm-resting), ``~grasp`` the env's own."""
    from hydra import compose, initialize_config_module

    from dexndm.conf import register
    from dexndm.sim.grasps import GraspConfig

    register()
    with initialize_config_module(config_module="dexndm.conf", version_base=None):
        plain = compose(config_name=app, overrides=["out_dir=x", "~grasp"]).env
        palm = compose(config_name=app, overrides=["out_dir=x", "grasp=palm_rest"]).env
        released = compose(config_name="pipeline", overrides=["out_dir=x"]).env
    assert "grasp" not in plain or GraspConfig(**plain.grasp) == GraspConfig()
    assert GraspConfig(**palm.grasp) == GraspConfig(palm_blend=(0.8, 1.0), allow_palm_contact=True,
                                                    min_tip_contacts=2, squeeze=(0.0, 0.1))
    assert GraspConfig(**released.grasp) == GraspConfig(**palm.grasp) and released.max_sag is None


def test_init_from_warm_starts_weights_but_not_counters(tmp_path, tiny_env_cfg):
    src = tmp_path / "src"
    train(tiny_cfg(tiny_env_cfg, src, iterations=1))
    saved = load_checkpoint(src / "checkpoints" / "last.pt")
    wider = dict(tiny_env_cfg, wrist=["palm_up", "palm_down"])
    trainer = PPOTrainer(tiny_cfg(wider, tmp_path / "dst", iterations=1, init_from=str(src / "checkpoints" / "last.pt")))
    try:
        for k, v in trainer.model.state_dict().items():
            torch.testing.assert_close(v, saved["model"][k])
        assert trainer.iteration == 0 and trainer.frames == 0
        assert trainer.initialised_from is not None
        # the Adam moments and the learning rate reached travel too: a fresh Adam at ppo.lr
        # would throw a converged policy far from where it was
        moments = trainer.optimizer.state_dict()["state"]
        for key, state in saved["optimizer"]["state"].items():
            torch.testing.assert_close(moments[key]["exp_avg_sq"], state["exp_avg_sq"])
        assert trainer.schedule.lr == pytest.approx(min(trainer.ppo.lr, saved["schedule"]["lr"]))
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(trainer.schedule.lr)
    finally:
        trainer.close()
    # the lineage counts the frames of both runs, through a resume of the warm-started one as well
    dst = tmp_path / "dst2"
    cfg = tiny_cfg(wider, dst, iterations=1, init_from=str(src / "checkpoints" / "last.pt"))
    train(cfg)
    train(dict(cfg, total_frames=2 * cfg["total_frames"]))
    lineage = lineage_frames(load_checkpoint(dst / "checkpoints" / "last.pt"))
    parent = src / "checkpoints" / "last.pt"
    assert lineage == {"frames": saved["counters"]["frames"] + 2 * cfg["total_frames"], "complete": True,
                       "parents": [{"path": str(parent), "sha256": file_sha256(parent)}]}
    assert lineage_frames(saved) == {"frames": saved["counters"]["frames"], "complete": True, "parents": []}
    legacy = dict(load_checkpoint(dst / "checkpoints" / "last.pt"))
    del legacy["lineage"]   # written before lineages were recorded: its parents' frames are unknown
    assert lineage_frames(legacy)["complete"] is False
    assert lineage_frames(legacy)["parents"] == [{"path": str(parent), "sha256": None}]
    bigger = tiny_cfg(wider, tmp_path / "bad", iterations=1, init_from=str(src / "checkpoints" / "last.pt"))
    bigger["ppo"] = dict(bigger.get("ppo", {}), hidden=[32])
    with pytest.raises(ValueError, match="differs from ppo.hidden"):
        PPOTrainer(bigger)


def test_log_std_bounds_clamp_the_policy_scale():
    from dexndm.rl.networks import ActorCritic

    cfg = PPOConfig(hidden=[8], log_std_min=-0.5, log_std_max=0.2, precision="fp32")
    ac = ActorCritic(5, 3, cfg)
    with torch.no_grad():
        ac.log_std.copy_(torch.tensor([-3.0, 0.0, 3.0]))
    _, scale = ac.policy(torch.zeros(2, 5))
    torch.testing.assert_close(scale[0], torch.tensor([-0.5, 0.0, 0.2]).exp())
    with pytest.raises(ValueError, match="log_std_min"):
        PPOConfig(log_std_min=1.0, log_std_max=0.0)


def test_resume_of_a_checkpoint_older_than_a_setting(tmp_path, tiny_env_cfg):
    """A checkpoint written before env.max_sag existed resumes only with the old behaviour (null)."""
    from dexndm.rl.checkpoint import from_json, save_checkpoint, to_json

    train(tiny_cfg(dict(tiny_env_cfg, max_sag=None), tmp_path, iterations=1))
    path = tmp_path / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(path)
    cfg = from_json(ckpt["config"])
    del cfg["env"]["max_sag"]                                   # as an older dexndm wrote it
    ckpt["config"] = to_json(cfg)
    save_checkpoint(path, {k: v for k, v in ckpt.items() if k != "format"})
    with pytest.raises(ValueError, match="env.max_sag"):
        PPOTrainer(tiny_cfg(tiny_env_cfg, tmp_path, iterations=2))          # the new default (0.02) differs
    trainer = PPOTrainer(tiny_cfg(dict(tiny_env_cfg, max_sag=None), tmp_path, iterations=2))
    assert trainer.resumed_from is not None
    trainer.close()
    # rollouts and evaluations rebuild the env it trained in, not today's default (0.02)
    _, meta = load_oracle(path)
    assert "max_sag" in meta["config"]["env"] and meta["config"]["env"]["max_sag"] is None


def test_committed_oracles_name_every_setting_added_since_they_were_trained():
    """A setting added to EnvConfig/PPOConfig must get a legacy value (the code's behaviour before it),
    or the committed oracles can no longer be resumed or evaluated in the env they trained in."""
    from dataclasses import asdict
    from pathlib import Path

    from dexndm.rl.checkpoint import from_json, with_legacy_values
    from dexndm.rl.ppo import _flatten
    from dexndm.sim.config import EnvConfig

    now = set(_flatten({"env": asdict(EnvConfig()), "ppo": asdict(PPOConfig())}))
    checked = 0
    for path in sorted(Path(__file__).parents[1].glob("checkpoints/oracle/*/last.pt")):
        config = from_json(load_checkpoint(path)["config"])
        if "palm_blend" not in config["env"].get("grasp", {}):
            continue            # trained before today's grasp settings: their caches are gone anyway
        saved = {k for k in _flatten(with_legacy_values(config)) if k.split(".")[0] in ("env", "ppo")}
        assert now - saved == set(), f"{path}: add these to checkpoint.LEGACY_VALUES: {sorted(now - saved)}"
        checked += 1
    assert checked >= 3


def test_batch_values_give_gae_the_values_of_its_own_two_passes(tmp_path, tiny_env_cfg):
    """One trunk pass per frame (next values shifted, recomputed only where an episode ended or
    the batch ends) gives GAE exactly what calling the critic on obs and next obs gives."""
    from torchrl.objectives.value import GAE

    from dexndm.rl.ppo import batch_values

    cfg = tiny_cfg({**tiny_env_cfg, "episode_steps": 5}, tmp_path, iterations=1)
    cfg["ppo"].update(horizon=16, precision="fp32")     # exact: bf16 products round by batch shape
    trainer = PPOTrainer(cfg)
    try:
        batch = next(trainer._batches)
        done = batch["next", "done"].squeeze(-1)
        assert done[:, :-1].any(), "the batch should hold episode ends inside it"
        reference = batch.clone()
        GAE(gamma=0.99, lmbda=0.95, value_network=trainer.critic, average_gae=False)(reference)
        fast = batch.clone()
        with torch.no_grad():
            batch_values(trainer.model, fast)
            trainer.gae(fast)
    finally:
        trainer.close()
    for key in ("state_value", ("next", "state_value"), "advantage", "value_target"):
        torch.testing.assert_close(fast[key], reference[key], rtol=0, atol=1e-5, msg=str(key))
    # a reset observation is not the terminal one: the shifted value alone would be wrong there
    shifted = torch.cat([reference["state_value"][:, 1:], reference["state_value"][:, -1:]], 1)
    assert not torch.allclose(shifted[:, :-1][done[:, :-1]], reference["next", "state_value"][:, :-1][done[:, :-1]])


def test_bf16_trunk_keeps_heads_and_log_probs_in_fp32():
    from dexndm.rl.networks import ActorCritic

    torch.manual_seed(0)
    full = ActorCritic(24, 16, PPOConfig(hidden=[64, 32], precision="fp32"))
    half = ActorCritic(24, 16, PPOConfig(hidden=[64, 32], precision="bf16"))
    half.load_state_dict(full.state_dict())
    obs = torch.randn(256, 24)
    (loc_f, scale_f), (loc_h, scale_h) = full.policy(obs), half.policy(obs)
    assert loc_h.dtype == scale_h.dtype == half.value(obs).dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in half.parameters())
    gap = (loc_h - loc_f).abs().max()
    assert 0 < gap < 0.05 * loc_f.abs().max()            # rounded in the trunk, close to fp32
    torch.testing.assert_close(scale_h, scale_f)
    with pytest.raises(ValueError, match="precision"):
        PPOConfig(precision="fp16")


def test_auto_precision_follows_the_hardware_and_a_resume_keeps_the_checkpoints(tmp_path, tiny_env_cfg,
                                                                                monkeypatch):
    from dexndm.rl import config as ppo_config
    from dexndm.rl.networks import ActorCritic

    cpu = torch.device("cpu")
    assert PPOConfig().precision == "auto"
    with pytest.raises(ValueError, match="resolve 'auto'"):
        ActorCritic(5, 3, PPOConfig(hidden=[8]))                # never a silent fp32
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(ppo_config, "native_bf16", lambda device, native=native: native)
        assert ppo_config.resolve_precision("auto", cpu) == expected
        assert ppo_config.resolve_precision("fp32", cpu) == "fp32"       # an explicit choice stands
        trainer = PPOTrainer(tiny_cfg(tiny_env_cfg, tmp_path / expected, iterations=1))
        trainer.close()
        assert trainer.ppo.precision == trainer.cfg["ppo"]["precision"] == expected
        assert trainer.model.trunk_dtype == (torch.bfloat16 if native else None)
    # an fp32 run resumed under auto on bf16 hardware stays fp32: resume goes on as the run did
    train(tiny_cfg(dict(tiny_env_cfg), tmp_path / "run", iterations=1, ppo=dict(TINY_PPO, precision="fp32")))
    monkeypatch.setattr(ppo_config, "native_bf16", lambda device: True)
    trainer = PPOTrainer(tiny_cfg(tiny_env_cfg, tmp_path / "run", iterations=2))
    trainer.close()
    assert trainer.resumed_from is not None and trainer.ppo.precision == "fp32"
    with pytest.raises(ValueError, match="ppo.precision"):      # an explicit other precision is a changed config
        PPOTrainer(tiny_cfg(tiny_env_cfg, tmp_path / "run", iterations=2, ppo=dict(TINY_PPO, precision="bf16")))


def test_bf16_training_updates_and_logs_the_physics_share(tmp_path, tiny_env_cfg):
    cfg = tiny_cfg(tiny_env_cfg, tmp_path, iterations=2)
    cfg["ppo"]["precision"] = "bf16"
    trainer = PPOTrainer(cfg)
    before = trainer.model.actor_trunk[0].weight.detach().clone()
    try:
        trainer.run()
        stepping = trainer.env.physics.step_seconds
    finally:
        trainer.close()
    assert not torch.equal(before, trainer.model.actor_trunk[0].weight)
    assert trainer.model.actor_trunk[0].weight.dtype == torch.float32
    rows = read_csv(tmp_path / "metrics.csv")
    shares = [float(r["perf/outside_physics_fraction"]) for r in rows]
    assert all(0.0 < s < 1.0 for s in shares) and stepping > 0
    model, meta = load_oracle(tmp_path / "checkpoints" / "last.pt")     # rebuilt as trained
    assert meta["config"]["ppo"]["precision"] == "bf16" and model.trunk_dtype == torch.bfloat16


def test_bench_ppo_reports_the_physics_share_of_each_phase(tmp_path, tiny_env_cfg):
    from dexndm.bench import ppo as bench

    with pytest.raises(FileNotFoundError, match="trained phase"):
        bench.run(trained=tmp_path / "missing.pt")                 # refused before any timing
    result = bench.run(quick=True, precision="bf16", env=tiny_env_cfg)
    assert result["precision"] == "bf16" and "trained/outside_physics_fraction" not in result
    assert result["device"] != "auto" and result["horizon"] == 32        # what ran, resolved
    assert 0.0 < result["outside_physics_fraction"] == result["fresh/outside_physics_fraction"] < 1.0
    assert 0.0 < result["fresh/physics_fraction_of_collect"] < 1.0
