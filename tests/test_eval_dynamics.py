"""Dynamics evaluation (DexNDM Fig. 6 / Fig. 8(A)) and the models benchmark."""

from __future__ import annotations

import json
import math

import lightning as L
import numpy as np
import pytest
import torch

from datamodules import TrajectoryDataModule
from dexndm.data.synthetic import random_trajectory, write_random_file
from dexndm.data.writer import TrajectoryWriter
from dexndm.eval.dynamics import evaluate_dynamics, main
from dexndm.hand import constants as hc
from dexndm.models.dynamics import build_dynamics
from dexndm.models.lit_dynamics import CKPT_FORMAT, CONTROL_RATE_HZ, DynamicsModule

torch.set_num_threads(1)
W, H, T = 4, 5, 30


def _save(net, path):
    """A checkpoint in the format DynamicsModule writes and load_dynamics reads."""
    meta = {"joint_order": list(hc.JOINT_NAMES), "variant": net.name, "window": net.window, "delta": net.delta,
            "control_rate_hz": CONTROL_RATE_HZ, "format": CKPT_FORMAT, "config": dict(net.config())}
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "dexndm_meta": meta}, path)
    return str(path)


def _hold_net(window=W):
    """Joint-wise delta model whose output is exactly zero: predicts q_{t+1} = q_t."""
    net = build_dynamics("jointwise", window=window, hidden=8, depth=1)
    with torch.no_grad():
        for p in net.net.parameters():
            p.zero_()
    return net


def _constructed(path, n=3):
    """q_{t+1} = target_t; |q_{t+1} - q_t| grows with t and with the joint index."""
    qs = []
    with TrajectoryWriter(path, domain={"name": "constructed", "params": {}},
                          source={"kind": "synthetic", "seed": 0}, config={}) as w:
        for i in range(n):
            t = np.arange(T + 1)[:, None]
            scale = 4e-4 * (np.arange(hc.NUM_JOINTS) + 1)[None] * (1 + 0.5 * i)
            q = (hc.CANONICAL_POSE[None] + scale * t * (-1.0) ** t).astype(np.float32)
            assert np.allclose(hc.clamp_to_limits(q), q)
            traj = random_trajectory(i, T, optional=False)
            traj.update(q=q, target=q[1:].copy())
            w.append(traj)
            qs.append(q.astype(np.float64))
    return str(path), qs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("evaldyn")
    sim = str(write_random_file(d / "sim.h5", 12, seed=0, lengths=(16, 24), optional=False))
    ood, qs = _constructed(d / "ood.h5")
    # a real (briefly trained) DynamicsModule checkpoint
    dm = TrajectoryDataModule([{"path": sim, "name": "sim"}], kind="dynamics", window=W, batch_size=32, split=0.75)
    trainer = L.Trainer(max_steps=3, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        enable_checkpointing=False)
    trainer.fit(DynamicsModule("jointwise", window=W, hidden=16, depth=1), datamodule=dm)
    trained = d / "jointwise.ckpt"
    trainer.save_checkpoint(trained)
    torch.manual_seed(0)
    ckpts = {"jointwise": str(trained),
             "wholehand": _save(build_dynamics("wholehand", window=W, hidden=16, depth=1), d / "wholehand.ckpt"),
             "hold": _save(_hold_net(), d / "hold.ckpt")}
    return d, ckpts, {"ood": ood, "sim": sim}, qs


def test_report_shapes_and_files(setup):
    d, ckpts, sets, _ = setup
    out = d / "report"
    rep = evaluate_dynamics(ckpts, sets, horizon=H, out=out)
    for c in ckpts:
        for s in sets:
            r = rep["results"][c][s]
            assert len(r["joint_err"]) == hc.NUM_JOINTS and len(r["multistep_err"]) == H
            assert np.isfinite(r["joint_err"]).all() and np.isfinite(r["multistep_err"]).all()
            assert r["mean"] == pytest.approx(np.mean(r["joint_err"]))
    for ext in ("md", "csv", "json", "png"):
        assert (out / f"dynamics_eval.{ext}").stat().st_size > 0
    md = (out / "dynamics_eval.md").read_text()
    assert all(name in md for name in hc.JOINT_NAMES)
    assert all(name in md for name in [*ckpts, *sets])
    assert json.loads((out / "dynamics_eval.json").read_text())["horizon"] == H


def test_hold_model_errors_analytic(setup):
    """Hold model: one-step error of joint j is mean_t |q_{t+1} - q_t| over t = W-1..T-1, and the
    k-step error is mean |q_{t+k} - q_t| over t = W-1..T-H; a shifted step or permuted joint fails."""
    _, ckpts, sets, qs = setup
    rep = evaluate_dynamics({"hold": ckpts["hold"]}, {"ood": sets["ood"]}, horizon=H, batch_size=7)
    r = rep["results"]["hold"]["ood"]
    one = np.concatenate([np.abs(q[W:] - q[W - 1:-1]) for q in qs]).mean(0)
    np.testing.assert_allclose(r["joint_err"], one, rtol=1e-4)
    assert np.all(np.diff(r["joint_err"]) > 0)            # errors grow with the joint index by construction
    multi = [np.concatenate([np.abs(q[W - 1 + k:T - H + 1 + k] - q[W - 1:T - H + 1]) for q in qs]).mean()
             for k in range(1, H + 1)]
    np.testing.assert_allclose(r["multistep_err"], multi, rtol=1e-4)
    assert r["n_windows"] == len(qs) * (T - W + 1) and r["n_rollouts"] == len(qs) * (T - W - H + 2)


def test_rollout_step_one_is_one_step(setup):
    _, ckpts, sets, _ = setup
    rep = evaluate_dynamics({"wholehand": ckpts["wholehand"]}, {"sim": sets["sim"]}, horizon=1)
    r = rep["results"]["wholehand"]["sim"]
    np.testing.assert_allclose(r["multistep_joint_err"][0], r["joint_err"], rtol=1e-5)


def test_refusals(setup, capsys):
    d, ckpts, sets, _ = setup
    with pytest.raises(FileNotFoundError, match="missing"):
        evaluate_dynamics({"a": str(d / "missing.ckpt")}, sets)
    with pytest.raises(FileNotFoundError, match="nope"):
        evaluate_dynamics(ckpts, {"x": str(d / "nope.h5")})
    long = _save(_hold_net(window=T + 5), d / "long.ckpt")
    with pytest.raises(ValueError, match="no window fits"):
        evaluate_dynamics({"long": long}, {"ood": sets["ood"]})
    with pytest.raises(ValueError, match="horizon"):
        evaluate_dynamics({"hold": ckpts["hold"]}, {"ood": sets["ood"]}, horizon=T)
    assert main(["--ckpt", f"long={long}", "--eval", f"ood={sets['ood']}", "--out", str(d / "x")]) == 2
    assert "no window fits" in capsys.readouterr().err


def test_cli(setup):
    d, ckpts, sets, _ = setup
    out = d / "cli"
    assert main(["--ckpt", f"hold={ckpts['hold']}", "--eval", f"ood={sets['ood']}", "--out", str(out),
                 "--horizon", "3"]) == 0
    assert len(json.loads((out / "dynamics_eval.json").read_text())["results"]["hold"]["ood"]["multistep_err"]) == 3


def test_bench_models_quick():
    from dexndm.bench.models import run

    res = run(quick=True, hidden=32, depth=1, batch=128)
    keys = ("jointwise_samples_per_s", "wholehand_samples_per_s", "fingerwise_samples_per_s",
            "shared_samples_per_s", "jointwise_over_wholehand", "loader_samples_per_s", "loader_over_training")
    for k in keys:
        assert isinstance(res[k], float) and math.isfinite(res[k]) and res[k] > 0, k
