"""`dexndm pipeline` end to end at tiny sizes: every report file appears, stages cache and
rerun on request, and a bad domain is refused before any stage runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from dexndm.apps.pipeline import run
from dexndm.conf import register
from dexndm.models.generalist import GeneralistModule
from dexndm.models.lit_dynamics import DynamicsModule
from dexndm.sim.observations import deploy_layout

J = 16


def _save(module, path: Path) -> str:
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return str(path)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """Tiny stand-ins for the released generalist and sim-pretrained dynamics checkpoints."""
    d = tmp_path_factory.mktemp("released")
    torch.manual_seed(0)
    dim = deploy_layout().dim
    gen = GeneralistModule(hidden=8, blocks=1, stats={"mean": [0.0] * dim, "std": [1.0] * dim})
    torch.nn.init.zeros_(gen.net.mlp.out.weight)          # a still hand: every episode survives
    torch.nn.init.zeros_(gen.net.mlp.out.bias)
    stats = {k: [0.0] * J for k in ("q_mean", "a_mean", "dq_mean")} | {k: [1.0] * J for k in ("q_std", "a_std")}
    stats["dq_std"] = [0.01] * J
    out = {"generalist": _save(gen, d / "generalist.ckpt")}
    for variant in ("jointwise", "wholehand"):
        out[variant] = _save(DynamicsModule(variant, window=10, hidden=8, depth=1, stats=stats), d / f"{variant}.ckpt")
    return out


def _cfg(out_dir: Path, released: dict, tiny_env_cfg: dict, extra: list[str] = ()):
    register()
    env = {k: v for k, v in tiny_env_cfg.items() if k in ("object_names", "grasp_dir", "grasp", "randomization", "nthread")}
    with initialize_config_module(config_module="dexndm.conf", version_base=None):
        cfg = compose(config_name="pipeline", overrides=[
            f"out_dir={out_dir}", "domain=latency", f"checkpoints.generalist={released['generalist']}",
            f"checkpoints.jointwise={released['jointwise']}", f"checkpoints.wholehand={released['wholehand']}",
            "task.episode_steps=24", "sim_rollouts.episodes=6", "sim_rollouts.num_envs=6",   # 6: one held out
            "chaos_box.episodes=6", "chaos_box.num_envs=3", "chaos_box.balls=4",
            "finetune.max_epochs=1", "residual.max_epochs=1", "evaluate.seeds=[0,1,2]", "evaluate.episodes=2",
            "evaluate.num_envs=2", "video.enabled=false", *extra])
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True)
    plain["env"] = env
    return plain


def test_tiny_pipeline_writes_the_report_and_caches_stages(tmp_path, released, tiny_env_cfg):
    report = run(_cfg(tmp_path, released, tiny_env_cfg))
    for name in ("report.json", "results.md", "results.csv", "results.png"):
        assert (tmp_path / name).is_file(), name
    data = json.loads((tmp_path / "report.json").read_text())
    assert set(data["methods"]) == {"direct", "dexndm", "wholehand", "source"}     # source: the sim reference
    diag = data["diagnosis"]
    assert set(diag) == {"gap", "residual", "dynamics", "base"} and set(diag["residual"]) == {"jointwise", "wholehand"}
    from dexndm.data.reader import TrajectoryFile

    with TrajectoryFile(tmp_path / "sim_rollouts" / "sim_rollouts.h5") as f:             # mean |a_t - q_t|
        gaps = [np.abs(t["target"] - t["q"][:-1]).ravel() for _, t in f.iter(fields=["q", "target"])]
    assert diag["base"]["command_offset_rad"] == pytest.approx(float(np.concatenate(gaps).mean()), rel=1e-6)
    for r in diag["residual"].values():                     # the frozen model's view of the residual's effect
        assert r["track_zero"] > 0 and r["track_ratio"] == pytest.approx(r["track"] / r["track_zero"])
    assert "Diagnosis" in (tmp_path / "results.md").read_text()
    for method in data["methods"].values():
        assert {"rot_rad", "ttf"} <= set(method)
        assert method["ttf"]["n"] == 3 and 0.0 <= method["ttf"]["mean"] <= 1.0
    assert data["domain"] == "latency" and len(data["checkpoints"]["generalist"]) == 64
    assert report["methods"] == data["methods"]
    paired = data["paired_gain"]["dexndm"]["rot_rad"]        # seed by seed against direct transfer
    direct, dexndm = data["per_seed"]["direct"], data["per_seed"]["dexndm"]
    assert paired["per_seed"] == pytest.approx([b["rot_rad"] - a["rot_rad"] for a, b in zip(direct, dexndm)])
    assert "seed by seed" in (tmp_path / "results.md").read_text()
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/stage.json")}
    assert len(stamp) == 7                                  # every stage but the (disabled) video
    again = run(_cfg(tmp_path, released, tiny_env_cfg))     # all cached: nothing reruns
    assert all(v == 0.0 for v in again["timings"].values())
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/stage.json")} == stamp
    forced = run(_cfg(tmp_path, released, tiny_env_cfg, ["force=[evaluate]"]))
    assert forced["timings"]["evaluate"] > 0 and forced["timings"]["chaos_box"] == 0.0
    deeper = run(_cfg(tmp_path, released, tiny_env_cfg, ["residual.history=2", "residual.horizon=3"]))
    assert deeper["timings"]["residual_jointwise"] > 0 and deeper["timings"]["finetune_jointwise"] == 0.0
    from dexndm.models.residual import load_residual

    stage = json.loads((tmp_path / "residual_jointwise" / "stage.json").read_text())
    meta = load_residual(stage["outputs"]["checkpoint"])[1]
    assert meta["config"]["history"] == 2 and meta["horizon"] == 3        # reads 2 steps, rolls 3
    assert stage["outputs"]["horizon"] == 3                              # what the report's diagnosis reads
    assert "data.window=13" in stage["outputs"]["command"]               # the dynamics' 10 steps + 1 before + 2 after
    source_model = released["jointwise"]                                 # stands in for a source-fine-tuned model
    tracked = run(_cfg(tmp_path, released, tiny_env_cfg, [f"residual.reference={{jointwise:{source_model}}}"]))
    assert tracked["timings"]["residual_jointwise"] > 0 and tracked["timings"]["finetune_jointwise"] == 0.0
    stage = json.loads((tmp_path / "residual_jointwise" / "stage.json").read_text())
    assert load_residual(stage["outputs"]["checkpoint"])[1]["reference_ckpt"] == source_model
    extra = str(tmp_path / "sim_rollouts" / "sim_rollouts.h5")           # any trajectory file stands in
    mixed = run(_cfg(tmp_path, released, tiny_env_cfg, [f"finetune.extra_data=[{extra}]"]))
    assert mixed["timings"]["finetune_jointwise"] > 0 and mixed["timings"]["chaos_box"] == 0.0
    split = json.loads((tmp_path / "finetune_jointwise" / "split.json").read_text())
    assert split["files"] == ["real", "extra_0"]                          # Chaos Box data plus the extra file
    assert {name for name, _ in split["train"] + split["val"]} == {"real", "extra_0"}
    on_target = run(_cfg(tmp_path, released, tiny_env_cfg, ["residual.states=target", "residual.target_episodes=4"]))
    assert on_target["timings"]["target_rollouts"] > 0 and on_target["timings"]["chaos_box"] == 0.0
    rollouts = json.loads((tmp_path / "target_rollouts" / "stage.json").read_text())["outputs"]
    assert rollouts["episodes"] == 4 and rollouts["out"].endswith("target_rollouts.h5")
    with TrajectoryFile(rollouts["out"]) as f:                          # the target domain's own states
        assert f.meta["domain"]["name"] == "latency"
    for variant in ("jointwise", "wholehand"):
        stage = json.loads((tmp_path / f"residual_{variant}" / "stage.json").read_text())
        assert stage["inputs"]["data"] == rollouts["out"]
        meta = load_residual(stage["outputs"]["checkpoint"])[1]
        assert meta["history_commands"] == "recorded" and meta["reference_ckpt"] == released[variant]
    proxy = run(_cfg(tmp_path, released, tiny_env_cfg, [
        "residual.states=target", "residual.target_episodes=4", "residual.reference=proxy",
        "residual.proxy.domains=[actuator_gap]", "residual.proxy.rounds=1", "residual.proxy.num_envs=2",
        "residual.proxy.max_epochs=1"]))
    assert proxy["timings"]["proxy_data"] > 0 and proxy["timings"]["target_rollouts"] == 0.0
    data = json.loads((tmp_path / "proxy_data" / "stage.json").read_text())["outputs"]
    with TrajectoryFile(data["files"][0]) as f:                          # the proxy hand's states, sim-labelled
        assert f.meta["domain"]["name"] == "actuator_gap" and f.meta["source"]["strategy"] == "sim_reference"
        assert len(f) == data["windows"]["actuator_gap"] > 0
    for variant in ("jointwise", "wholehand"):
        ref = json.loads((tmp_path / f"proxy_reference_{variant}" / "stage.json").read_text())
        assert ref["inputs"]["data"] == data["files"] and ref["inputs"]["pretrained"] == released[variant]
        stage = json.loads((tmp_path / f"residual_{variant}" / "stage.json").read_text())
        assert stage["inputs"]["data"] == rollouts["out"]                # still the target hand's own states
        assert load_residual(stage["outputs"]["checkpoint"])[1]["reference_ckpt"] == ref["outputs"]["checkpoint"]


REFUSED_UP_FRONT = [                       # (overrides, error, message): nothing is written for any of them
    (["domain=no_such_domain"], Exception, "no_such_domain"),
    (["checkpoints.generalist=/nope/g.ckpt"], FileNotFoundError, "generalist checkpoint"),
    (["finetune.extra_data=[/nope/task.h5]"], FileNotFoundError, "finetune.extra_data"),
    (["residual.reference={jointwise:/nope/src.ckpt}"], FileNotFoundError, "residual.reference.jointwise"),
    (["residual.reference={fingers:JOINTWISE}"], ValueError, "jointwise/wholehand"),
    (["evaluate.ceiling=0.1"], ValueError, "has latency"),                 # the tiny run's domain is `latency`
    (["residual.states=real"], ValueError, "residual.states"),
    (["residual.reference=proxy"], ValueError, "states=target"),           # a reference for target states only
    (["residual.states=target", "residual.reference=proxy", "residual.proxy.domains=[latency]"], ValueError,
     "holds the target domain"),
    (["residual.states=target", "residual.reference=proxy", "residual.proxy.domains=[backlash]"], ValueError,
     "latency or backlash"),
]


@pytest.mark.parametrize("overrides, error, match", REFUSED_UP_FRONT)
def test_bad_domain_and_missing_checkpoint_are_refused_up_front(tmp_path, released, tiny_env_cfg, overrides, error,
                                                                 match):
    overrides = [o.replace("JOINTWISE", released["jointwise"]) for o in overrides]
    with pytest.raises(error, match=match):
        run(_cfg(tmp_path / "out", released, tiny_env_cfg, overrides))
    assert not (tmp_path / "out").exists()


def test_side_by_side_video(tmp_path, tiny_env_cfg):
    from dexndm.deploy.testing import write_tiny_checkpoints
    from dexndm.pipeline.video import side_by_side
    from dexndm.sim.render import gl_available

    ok, reason = gl_available()
    if not ok:
        pytest.skip(reason)
    gen, res = write_tiny_checkpoints(tmp_path)
    env = {k: v for k, v in tiny_env_cfg.items() if k != "num_envs"}
    out = side_by_side(f"generalist:{gen}", f"generalist:{gen}+residual:{res}", env, tmp_path / "v.gif", steps=6,
                       width=64, height=48)
    import imageio.v2 as imageio

    frames = imageio.mimread(out["video"])
    assert len(frames) == 4 and frames[0].shape[:2] == (48, 128)        # 7 states, every 2nd; two panels
    assert set(out) == {"video", "direct_rot_rad", "dexndm_rot_rad"}


def test_diagnosis_reports_what_the_gap_costs_and_what_each_residual_won_back():
    from dexndm.pipeline.report import diagnose, diagnosis_lines

    def m(rot, ttf, std=0.05):
        return {"rot_rad": {"mean": rot, "std": std, "n": 3}, "ttf": {"mean": ttf, "std": std, "n": 3}}

    methods = {"source": m(1.2, 0.9), "direct": m(0.8, 0.7), "dexndm": m(1.0, 0.8), "wholehand": m(0.7, 0.7)}
    stages = {"residual_jointwise": {"val_metrics": {"val/track": 0.5, "val/track_zero": 2.0, "val/res_abs": 0.1}},
              "finetune_jointwise": {"best_model_score": 0.3}}
    diag = diagnose(methods, stages)
    assert diag["gap"]["rot_rad"]["cost"] == pytest.approx(0.4)
    assert diag["gap"]["rot_rad"]["dexndm_recovered"] == pytest.approx(0.5)        # 0.2 of the 0.4 lost
    assert diag["gap"]["rot_rad"]["wholehand_recovered"] == pytest.approx(-0.25)
    assert diag["gap"]["ttf"]["dexndm_recovered"] == pytest.approx(0.5)
    with_ceiling = diagnose({**methods, "ideal": m(1.1, 0.9)}, stages)          # the simulator-computed ceiling
    assert with_ceiling["gap"]["rot_rad"]["ideal_recovered"] == pytest.approx(0.75)
    assert "ideal_won" not in diag["gap"]["rot_rad"]
    assert any("Ideal residual +0.300 (+75% of it)" in line for line in diagnosis_lines(with_ceiling))
    small = diagnose({**methods, "direct": m(1.15, 0.85, std=0.1)}, {})["gap"]["rot_rad"]   # cost 0.05 < spread
    assert not small["cost_exceeds_spread"] and small["dexndm_recovered"] is None
    assert small["dexndm_won"] == pytest.approx(-0.15)
    assert diag["residual"] == {"jointwise": {"track_zero": 2.0, "track": 0.5, "track_ratio": 0.25, "res_abs": 0.1,
                                              "horizon": 1}}
    assert diag["dynamics"]["jointwise"]["finetuned_eval_loss"] == 0.3
    assert diag["dynamics"]["jointwise"]["gap_over_error"] == pytest.approx(2.0 / 0.3)
    assert any("+50%" in line for line in diagnosis_lines(diag))
    assert not any("chases model error" in line for line in diagnosis_lines(diag))           # 6.7x: a visible gap
    blind = diagnose(methods, {**stages, "finetune_jointwise": {"best_model_score": 1.9}})   # 2.0 vs 1.9
    assert blind["dynamics"]["jointwise"]["gap_over_error"] == pytest.approx(2.0 / 1.9)
    assert any("chases model error" in line for line in diagnosis_lines(blind))
    pressed = diagnose(methods, {**stages, "sim_rollouts": {"command_offset_rad": 0.25}})
    assert pressed["base"] == {"command_offset_rad": 0.25} and "base" not in diag
    assert any("0.250 rad from its joints" in line for line in diagnosis_lines(pressed))
    assert "gap" not in diagnose({k: v for k, v in methods.items() if k != "source"}, {})
    rolled = {**stages, "residual_jointwise": {**stages["residual_jointwise"], "horizon": 8}}
    multi = diagnose(methods, rolled)           # an 8-step rollout's error says nothing against a one-step loss
    assert "gap_over_error" not in multi["dynamics"]["jointwise"] and multi["residual"]["jointwise"]["horizon"] == 8
    assert any("over 8 steps" in line for line in diagnosis_lines(multi))


def test_paired_gain_compares_methods_seed_by_seed():
    from dexndm.pipeline.report import paired_gains, paired_lines

    # Seeds differ a lot from each other, DexNDM beats direct transfer on each by about 0.1 rad: a gain the
    # between-seed spread hides and the seed-by-seed difference shows.
    per_seed = {"direct": [{"rot_rad": 1.0, "ttf": 0.5}, {"rot_rad": 2.0, "ttf": 0.6}, {"rot_rad": 3.0, "ttf": 0.7}],
                "dexndm": [{"rot_rad": 1.1, "ttf": 0.5}, {"rot_rad": 2.1, "ttf": 0.5}, {"rot_rad": 3.2, "ttf": 0.8}],
                "source": [{"rot_rad": 9.0, "ttf": 1.0}] * 3,
                "wholehand": [{"rot_rad": 0.0, "ttf": 0.0}]}                  # one seed: not comparable
    paired = paired_gains(per_seed)
    assert set(paired) == {"dexndm"}
    rot = paired["dexndm"]["rot_rad"]
    assert rot["per_seed"] == pytest.approx([0.1, 0.1, 0.2]) and rot["mean"] == pytest.approx(0.4 / 3)
    assert rot["every_seed"] and not paired["dexndm"]["ttf"]["every_seed"]      # 0, -0.1, +0.1
    assert paired["dexndm"]["ttf"]["mean"] == pytest.approx(0.0, abs=1e-12)
    lines = paired_lines(paired)
    assert any("+0.100 / +0.100 / +0.200; every seed" in line for line in lines)


PRESETS = sorted(p.stem for p in (Path(__file__).parents[1] / "dexndm/conf/preset").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_pipeline_preset_composes_and_builds_its_stages(tmp_path, preset):
    """Each shipped preset composes onto the pipeline config and names checkpoints and options the stages accept."""
    from omegaconf import OmegaConf

    from dexndm.pipeline.stages import build_stages

    register()
    with initialize_config_module(config_module="dexndm.conf", version_base=None):
        cfg = compose(config_name="pipeline", overrides=[f"+preset={preset}", f"out_dir={tmp_path}"])
    names = [s.name for s in build_stages(OmegaConf.to_container(cfg, resolve=True))]
    assert names[0] == "sim_rollouts" and names[-2:] == ["evaluate", "video"]
    if preset == "cylinders_target_states":
        assert {"target_rollouts", "proxy_data", "proxy_reference_jointwise"} <= set(names)
        assert "grasp" not in cfg.env                    # fingertip grasps, as the cylinders generalist learned from
    assert not any(tmp_path.iterdir())                   # building the stages writes nothing
