"""`dexndm train`: every experiment file composes and runs one tiny step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from dexndm.apps import train
from dexndm.conf import register
from dexndm.data.synthetic import write_random_file

EXPERIMENTS = sorted(p.stem for p in (Path(train.__file__).parents[1] / "conf" / "experiment").glob("*.yaml"))
TINY = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=2",
        "trainer.accelerator=cpu", "data.batch_size=32", "callbacks.progress=null", "logger=none",
        "model.hidden=16"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    return {"sim": write_random_file(d / "sim.h5", 12, seed=0, lengths=(14, 20)),
            "real": write_random_file(d / "real.h5", 8, seed=3, lengths=(14, 20)), "dir": d}


def run_experiment(name, out_dir, overrides):
    register()
    with initialize_config_module(config_module="dexndm.conf", version_base=None):
        cfg = compose(config_name="train", overrides=[f"experiment={name}", f"out_dir={out_dir}", *TINY, *overrides])
    return train.run(cfg)


@pytest.mark.parametrize("variant", ["jointwise", "fingerwise", "wholehand", "shared"])
def test_pretrain_then_finetune(variant, data, tmp_path):
    assert f"{variant}_pretrain" in EXPERIMENTS and f"{variant}_finetune" in EXPERIMENTS
    torch.set_num_threads(1)
    pre = run_experiment(f"{variant}_pretrain", tmp_path / "pre", [f"sim_data={data['sim']}", "model.depth=1"])
    assert Path(pre["best_model_path"]).is_file()
    assert json.loads((tmp_path / "pre" / "result.json").read_text())["best_model_path"] == pre["best_model_path"]
    ft = run_experiment(f"{variant}_finetune", tmp_path / "ft",
                        [f"real_data={data['real']}", f"pretrained={pre['last_model_path']}", "model.depth=1"])
    before = torch.load(pre["last_model_path"], weights_only=True)["state_dict"]
    after = torch.load(ft["last_model_path"], weights_only=True)["state_dict"]
    assert torch.equal(before["net.q_mean"], after["net.q_mean"])  # fine-tuning keeps the sim stats
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))  # and learns


def test_generalist_and_residual_experiments(data, tmp_path):
    torch.set_num_threads(1)
    gen = run_experiment("generalist", tmp_path / "gen", [f"sim_data={data['sim']}", "model.blocks=1"])
    assert Path(gen["best_model_path"]).is_file()
    dyn = run_experiment("jointwise_pretrain", tmp_path / "dyn", [f"sim_data={data['sim']}", "model.depth=1"])
    res = run_experiment("residual", tmp_path / "res", [f"sim_data={data['sim']}", f"dynamics_ckpt={dyn['last_model_path']}",
                                                       "model.depth=1"])
    meta = torch.load(res["best_model_path"], weights_only=True)["dexndm_meta"]
    assert meta["dynamics_ckpt"] == dyn["last_model_path"]


def test_every_experiment_file_is_covered():
    covered = {f"{v}_{s}" for v in ("jointwise", "fingerwise", "wholehand", "shared") for s in ("pretrain", "finetune")}
    assert set(EXPERIMENTS) == covered | {"generalist", "residual"}
