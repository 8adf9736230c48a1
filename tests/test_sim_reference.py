"""Sim-reference collection (``dexndm.collect.sim_reference``): windows of a proxy hand labelled with the sim's step."""

from __future__ import annotations

import numpy as np
import pytest

from dexndm.collect import sim_reference as SR
from dexndm.data.reader import TrajectoryFile
from dexndm.data.writer import TrajectoryWriter
from dexndm.sim.config import RandomizationConfig
from tests.test_eval_rotation import save_generalist

W = 4


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    return str(save_generalist(tmp_path_factory.mktemp("simref") / "gen.ckpt"))


def _collect(out, gen, tiny_env_cfg, domain, rounds=2, num_envs=1, measured=False):
    env = {k: tiny_env_cfg[k] for k in ("object_names", "grasp_dir", "grasp")} | {"nthread": 1}
    env["randomization"] = {**tiny_env_cfg["randomization"], "disturbance_scale": 0.0}   # no force resampled mid-step
    return SR.collect_sim_reference(out=out, generalist=gen, domain=domain, object_set=tiny_env_cfg["object_set"],
                                    axes="+z", wrist="palm_up", episode_steps=12, rounds=rounds, num_envs=num_envs,
                                    window=W, env=env, measured=measured, log=lambda msg: None)


def _windows(path):
    with TrajectoryFile(path) as f:
        rows = [t for _, t in f.iter(fields=["q", "target", "params"])]
        return rows, f.meta


def test_labels_are_the_sim_step_from_the_proxy_state(tmp_path, gen, tiny_env_cfg):
    """With the sim itself as the proxy, each window's label is where that hand went next (the next window's last
    measured q); with a softer hand the label is the sim's step, not the proxy's."""
    same = _collect(tmp_path / "nominal.h5", gen, tiny_env_cfg, "nominal")
    rows, meta = _windows(same["out"])
    assert same["windows"] == len(rows) > 4 and meta["source"]["strategy"] == "sim_reference"
    assert all(r["q"].shape == (W + 1, 16) and r["target"].shape == (W, 16) for r in rows)
    for a, b in zip(rows, rows[1:]):
        if a["params"]["round"] == b["params"]["round"]:             # one env: consecutive steps of one episode
            np.testing.assert_allclose(a["q"][-1], b["q"][-2], atol=1e-6)
            np.testing.assert_allclose(a["q"][1:-1], b["q"][:-2], atol=1e-6)    # the history slides by one
            np.testing.assert_allclose(a["target"][1:], b["target"][:-1], atol=1e-6)
    soft = tmp_path / "soft.yaml"
    soft.write_text("name: soft\nactuator:\n  kp_scale: 0.3\n  kd_scale: 0.5\n")
    rows, meta = _windows(_collect(tmp_path / "soft.h5", gen, tiny_env_cfg, str(soft))["out"])
    assert meta["domain"]["name"] == "soft"
    misses = [np.abs(a["q"][-1] - b["q"][-2]).max() for a, b in zip(rows, rows[1:])
              if a["params"]["round"] == b["params"]["round"]]
    assert max(misses) > 1e-3                                        # the sim steps elsewhere than the soft hand
    noisy = _windows(_collect(tmp_path / "measured.h5", gen, tiny_env_cfg, "nominal", measured=True)["out"])[0]
    clean = _windows(same["out"])[0]
    noise = np.concatenate([(a["q"][:-1] - b["q"][:-1]).ravel() for a, b in zip(noisy, clean)])
    assert 1e-3 < np.abs(noise).max() <= RandomizationConfig().joint_noise + 1e-6   # the env's encoder noise, history only
    np.testing.assert_allclose(noisy[0]["q"][-1], clean[0]["q"][-1], atol=1e-6)     # labels: the true sim step


def test_a_cut_run_continues_to_the_same_file(tmp_path, gen, tiny_env_cfg, monkeypatch):
    """Killed in the middle of its second round, a rerun into the same file ends with the uninterrupted run's
    windows: no window lost, none written twice."""
    whole = _windows(_collect(tmp_path / "whole.h5", gen, tiny_env_cfg, "actuator_gap")["out"])[0]
    first_round = sum(r["params"]["round"] == 0 for r in whole)
    assert 0 < first_round < len(whole) - 2
    real_append, calls = TrajectoryWriter.append, []

    def dying_append(self, traj):
        if len(calls) == first_round + 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real_append(self, traj)

    monkeypatch.setattr(TrajectoryWriter, "append", dying_append)
    with pytest.raises(KeyboardInterrupt):
        _collect(tmp_path / "cut.h5", gen, tiny_env_cfg, "actuator_gap")
    monkeypatch.setattr(TrajectoryWriter, "append", real_append)
    assert len(_windows(tmp_path / "cut.h5")[0]) == first_round + 2
    _collect(tmp_path / "cut.h5", gen, tiny_env_cfg, "actuator_gap")
    resumed = _windows(tmp_path / "cut.h5")[0]
    assert len(resumed) == len(whole)
    for a, b in zip(resumed, whole):
        np.testing.assert_allclose(a["q"], b["q"], atol=1e-6)
        assert a["params"] == b["params"]


def test_refuses_domains_the_sim_cannot_step_from(tmp_path, gen, tiny_env_cfg):
    with pytest.raises(ValueError, match="latency"):
        _collect(tmp_path / "lat.h5", gen, tiny_env_cfg, "latency")
    assert not (tmp_path / "lat.h5").exists()                       # refused before anything is written
