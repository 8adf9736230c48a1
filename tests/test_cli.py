"""Entry points: the Hydra demo app composed and run with tiny settings, and the CLI."""

from __future__ import annotations

import json

from hydra import compose, initialize_config_module

from dexndm import cli
from dexndm.apps import demo
from dexndm.conf import register


def test_demo_app_writes_its_report(tmp_path, grasp_dir):
    register()
    with initialize_config_module(config_module="dexndm.conf", version_base=None):
        cfg = compose(config_name="demo", overrides=[
            "steps=12", "env.num_envs=2", "render=false", f"out_dir={tmp_path}", f"env.grasp_dir={grasp_dir}",
            "env.object_names=[cuboids/00]", "env.randomization.scale_bins=1", "env.episode_steps=10",
            "domain=combined", "policy=random"])
    summary = demo.run(cfg)
    written = json.loads((tmp_path / "demo.json").read_text())
    assert written["config"]["domain"] == "combined"
    assert written["episodes_finished"]["ttf"]["n"] >= 2  # both envs finished a 10-step episode
    assert set(written["reward_terms"]) == {"rot", "goal", "offaxis", "lin_vel", "pose", "work", "torque", "position",
                                            "tip_contact", "drift"}
    assert summary["steps"] == 12


def test_cli_lists_commands_and_rejects_unknown(capsys):
    assert cli.main([]) == 0
    assert "demo" in capsys.readouterr().out
    assert cli.main(["nope"]) == 2
    assert cli.main(["domains"]) == 0
    assert "combined" in capsys.readouterr().out


def test_grasps_app_builds_caches_for_each_orientation(tmp_path):
    from dexndm.apps import grasps

    register()
    with initialize_config_module(config_module="dexndm.conf", version_base=None):
        cfg = compose(config_name="grasps", overrides=[
            "task=cuboids", f"env.grasp_dir={tmp_path}", "env.object_names=[cuboids/01]",
            "env.randomization.scale_bins=1", "env.grasp.candidates=32", "orientations=[palm_up,thumb_up]"])
    counts = grasps.run(cfg)
    assert len(counts) == 2 and min(counts.values()) >= 4
    files = sorted(p.name for p in (tmp_path / "cuboids").glob("*.npz"))
    assert len(files) == 2 and any("thumb_up" in f for f in files)
    assert grasps.run(cfg) == counts  # a second run finds the caches and rebuilds nothing


def test_every_command_module_has_a_main():
    import importlib

    for name, (module, _) in cli.COMMANDS.items():
        assert callable(getattr(importlib.import_module(module), "main", None)), name


def test_eval_dynamics_subcommand_dispatches(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        cli.main(["eval", "dynamics", "--help"])
    assert exc.value.code == 0
    assert "--ckpt" in capsys.readouterr().out
