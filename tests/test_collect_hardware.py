"""dexndm.collect on ONE hand (DexNDM Sec. 3.3): the emulated hand (real dynamixel_sdk over the pty
emulator) and the SimHand produce files of the sim strategies' schema, replay the same plans,
never send a target outside the limits or beyond the per-tick bound, resume, and stop cleanly
on SIGINT, bus errors and hardware errors with the motor named."""

from __future__ import annotations

import os
import signal
import time

import h5py
import numpy as np
import pytest

from dexndm.collect import collect
from dexndm.collect.cli import main as cli_main
from dexndm.collect.hardware import collect_on_hand
from dexndm.data import schema as S
from dexndm.data.reader import TrajectoryFile
from dexndm.data.synthetic import write_random_file
from dexndm.data.validate import validate
from dexndm.deploy.hands import make_hand
from dexndm.deploy.leap_hand import RAD_PER_TICK
from dexndm.hand import constants as hc

pytestmark = pytest.mark.filterwarnings("ignore:.*no trajectory has gravity_dir")   # synthetic sources
STEPS, SEED, WRIST, MAX_STEP = 10, 5, "palm_up", 0.1


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_random_file(tmp_path_factory.mktemp("src") / "rollouts.h5", 6, seed=3, lengths=(6, 16))


def _sim_cfg(grasp_dir: str) -> dict:
    return {"grasp_dir": grasp_dir, "grasp_candidates": 32, "wrist": WRIST, "max_step_rad": MAX_STEP}


@pytest.fixture(scope="module")
def hands(grasp_dir):
    """One connected hand of each simulated kind, shared by the module (every episode ramps first)."""
    with make_hand({"kind": "sim", "sim": _sim_cfg(grasp_dir)}) as sim, \
            make_hand({"kind": "emulated", "sim": _sim_cfg(grasp_dir), "leap": {"max_step_rad": MAX_STEP}}) as emu:
        yield {"sim": sim, "emulated": emu}


@pytest.fixture(scope="module")
def sim_files(tmp_path_factory, source):
    """Reference files of the batched simulator, same seed."""
    d = tmp_path_factory.mktemp("simref")
    return {s: collect(s, out=d / f"{s}.h5", episodes=3, num_envs=3, source_file=source, wrist=WRIST,
                       episode_steps=STEPS, seed=SEED, num_balls=4, progress=False)["out"]
            for s in ("chaos_box", "base_waves")}


def _layout(path) -> tuple[set, list]:
    """Root attr names, and per trajectory {dataset: (shape, dtype)} + group attr names."""
    with h5py.File(path, "r") as f:
        groups = [f[S.TRAJ_GROUP][k] for k in sorted(f[S.TRAJ_GROUP])]
        return set(f.attrs), [({k: (g[k].shape, g[k].dtype) for k in g}, set(g.attrs)) for g in groups]


def _trajs(path) -> list[dict]:
    with TrajectoryFile(path) as f:
        return [f.load(i) for i in f.indices]


def _on_hand(hand, strategy, out, episodes, source=None, **kw):
    args = dict(out=out, episodes=episodes, hand=hand, source_file=source, wrist=WRIST, episode_steps=STEPS,
                seed=SEED, settle_ticks=2, progress=False, keep_trace=True)
    return collect_on_hand(strategy, **{**args, **kw})


def _check_bounds(summary, trajs, quantized: bool) -> None:
    """Every command sent (ramps included) and every recorded target: inside the limits, at most
    MAX_STEP (+ half an encoder tick on a Dynamixel bus) from the previous one."""
    tol = (RAD_PER_TICK / 2 if quantized else 0.0) + 1e-6
    sent = summary["sent"]
    assert len(sent) and np.all(sent >= hc.JOINT_LOWER - 1e-9) and np.all(sent <= hc.JOINT_UPPER + 1e-9)
    assert np.abs(np.diff(sent, axis=0)).max() <= MAX_STEP + tol
    for tr in trajs:
        chain = np.concatenate([tr["initial_target"][None], tr["target"]]).astype(np.float64)
        assert np.abs(np.diff(chain, axis=0)).max() <= MAX_STEP + tol + 1e-6       # float32 storage
        assert np.all(tr["target"] >= hc.JOINT_LOWER - 1e-6) and np.all(tr["target"] <= hc.JOINT_UPPER + 1e-6)


@pytest.mark.parametrize("strategy", ["chaos_box", "base_waves"])
@pytest.mark.parametrize("kind", ["sim", "emulated"])
def test_hand_file_matches_sim_file(hands, sim_files, source, tmp_path, kind, strategy) -> None:
    out = tmp_path / f"{kind}.h5"
    summary = _on_hand(hands[kind], strategy, out, 3, source if strategy == "chaos_box" else None)
    assert summary["reason"] == "done" and summary["episodes"] == summary["written"] == 3
    assert validate(out) == []
    ref_root, ref = _layout(sim_files[strategy])
    root, got = _layout(out)
    assert root == ref_root and got == ref                  # same datasets, shapes, dtypes and attr names
    trajs, ref_trajs = _trajs(out), _trajs(sim_files[strategy])
    keys = (("noisy", "source_index", "noise_std") if strategy == "chaos_box"
            else ("joint", "wave", "amplitude", "omega"))
    for tr, rt in zip(trajs, ref_trajs):                    # the same seed plans the same episodes
        assert {k: tr["params"][k] for k in keys} == {k: rt["params"][k] for k in keys}
        assert tr["params"]["hand"] == kind and tr["params"]["num_balls"] == 0 and tr["success"]
        np.testing.assert_allclose(tr["gravity_dir"], rt["gravity_dir"], atol=1e-6)
        np.testing.assert_allclose(tr["initial_target"], rt["initial_target"], atol=RAD_PER_TICK)
        if strategy == "chaos_box" and not tr["params"]["noisy"]:   # replayed exactly (up to encoder ticks)
            np.testing.assert_allclose(tr["target"], rt["target"], atol=RAD_PER_TICK / 2 + 1e-6)
    _check_bounds(summary, trajs, quantized=kind == "emulated")
    assert np.abs(trajs[0]["q"][-1] - trajs[0]["q"][0]).max() > 1e-3           # the hand moved
    with TrajectoryFile(out) as f:
        assert f.meta["source"]["hand"] == kind and f.meta["domain"]["name"] == "nominal"
        assert ("emulated_bus" in f.meta["domain"]) == (kind == "emulated")


def test_square_waves_are_step_limited(hands, tmp_path) -> None:
    """Base waves' square jumps (0.5-1 rad) exceed the per-tick bound: the file holds what was sent."""
    summary = _on_hand(hands["sim"], "base_waves", tmp_path / "w.h5", 8, seed=11)
    trajs = _trajs(tmp_path / "w.h5")
    limited = [t for t in trajs if t["params"]["step_limited_ticks"] > 0]
    assert limited and all(t["params"]["wave"] != "sine" for t in limited)
    _check_bounds(summary, trajs, quantized=False)


def test_noise_on_about_half_the_episodes(hands, source, tmp_path) -> None:
    out = tmp_path / "noise.h5"
    summary = _on_hand(hands["sim"], "chaos_box", out, 40, source, episode_steps=3, settle_ticks=0, seed=1)
    assert summary["episodes"] == 40 and validate(out) == []
    noisy = 0
    with TrajectoryFile(source) as src:
        for tr in _trajs(out):
            want = hc.clamp_to_limits(src.load(tr["params"]["source_index"])["target"][:3].astype(np.float64))
            dev = np.abs(tr["target"] - want.astype(np.float32)).max()
            assert (dev > 1e-4) == tr["params"]["noisy"]    # noise is in the data exactly when recorded
            noisy += tr["params"]["noisy"]
    assert 12 <= noisy <= 28                                # p = 0.5 over 40 episodes (> 2.5 sigma)


def test_resume_continues_the_file(hands, source, tmp_path) -> None:
    out = tmp_path / "r.h5"
    first = _on_hand(hands["emulated"], "free_hand", out, 2, source)
    before = _trajs(out)
    more = _on_hand(hands["emulated"], "free_hand", out, 4, source)
    assert first["existing"] == 0 and more["existing"] == 2 and more["written"] == 2 and more["episodes"] == 4
    again = _on_hand(hands["emulated"], "free_hand", out, 3, source)
    assert again["written"] == 0 and again["episodes"] == 4
    trajs = _trajs(out)
    assert len(trajs) == 4 and validate(out) == []
    for a, b in zip(before, trajs[:2]):
        np.testing.assert_array_equal(a["q"], b["q"])
    with pytest.raises(S.SchemaError, match="cannot resume"):           # another hand: another domain
        _on_hand(hands["sim"], "free_hand", out, 5, source)


def _inject_on_episode(k: int, tick: int, inject):
    """An on_tick hook calling ``inject(collector)`` at tick ``tick`` of the k-th episode (from 0)."""
    seen = {"episodes": -1, "done": False}

    def hook(collector, t):
        if t == 0 and not seen["done"]:
            seen["episodes"] += 1
        if seen["episodes"] == k and t == tick and not seen["done"]:
            seen["done"] = True
            inject(collector)
    return hook


@pytest.mark.parametrize("fault, motor, reason, words", [
    (lambda e: e.faults.corrupt_crc_ids.add(4), 4, "bus_errors", ["motor 4", "3 consecutive"]),
    (lambda e: e.set_hardware_error(6, 0x20), 6, "hardware_error", ["motor 6", "overload", "0x20"]),
])
def test_fault_stops_naming_the_motor(grasp_dir, tmp_path, fault, motor, reason, words) -> None:
    out = tmp_path / "f.h5"
    hand = {"kind": "emulated", "sim": _sim_cfg(grasp_dir), "leap": {"max_step_rad": MAX_STEP}}
    summary = _on_hand(hand, "base_waves", out, 5, on_tick=_inject_on_episode(2, 3, lambda c: fault(c.hand.emulator)))
    assert summary["reason"] == reason and summary["motor"] == motor
    assert all(w in summary["message"] for w in words), summary["message"]
    assert summary["written"] == 2 and summary["aborted"] == (3 if reason == "bus_errors" else 1)
    assert validate(out) == [] and len(_trajs(out)) == 2                # finished episodes kept, valid


def test_transient_bus_error_drops_one_episode(hands, tmp_path) -> None:
    emu = hands["emulated"].emulator

    def drop(c):
        emu.faults.drop_probability = 1.0
    try:
        hook = _inject_on_episode(1, 2, drop)

        def on_tick(c, t):
            emu.faults.drop_probability = 0.0                # one failed read, then the bus recovers
            hook(c, t)
        summary = _on_hand(hands["emulated"], "base_waves", tmp_path / "t.h5", 3, on_tick=on_tick)
    finally:
        emu.faults.drop_probability = 0.0
    assert summary["reason"] == "done" and summary["episodes"] == 3
    assert summary["aborted"] == 1 and summary["bus_errors"] == 1 and validate(tmp_path / "t.h5") == []


def test_sigint_stops_cleanly(hands, tmp_path) -> None:
    before = signal.getsignal(signal.SIGINT)        # SIG_IGN where pytest itself runs in the background
    hook = _inject_on_episode(1, 2, lambda c: os.kill(os.getpid(), signal.SIGINT))
    summary = _on_hand(hands["sim"], "base_waves", tmp_path / "s.h5", 4, on_tick=hook)
    assert summary["reason"] == "sigint" and summary["episodes"] == 1 and summary["aborted"] == 1
    assert validate(tmp_path / "s.h5") == []
    assert signal.getsignal(signal.SIGINT) is before                              # restored


def test_realtime_paces_at_20hz(hands, tmp_path) -> None:
    """A realtime hand is paced: every tick (ramp, settle, episode, last read) waits for its 50 ms slot."""
    t0 = time.perf_counter()
    summary = _on_hand(hands["sim"], "base_waves", tmp_path / "rt.h5", 1, episode_steps=4, settle_ticks=1,
                       realtime=True, seed=3)
    elapsed = time.perf_counter() - t0
    paced = len(summary["sent"]) + 1                    # every send, plus the episode's last read
    assert summary["episodes"] == 1 and elapsed >= 0.95 * paced * 0.05
    assert isinstance(_trajs(tmp_path / "rt.h5")[0]["params"]["late_ticks"], int)


def test_cli_hand_path(grasp_dir, tmp_path, capsys) -> None:
    out = tmp_path / "c.h5"
    common = ["--out", str(out), "--episodes", "2", "--steps", "4", "--wrist", WRIST, "--quiet"]
    assert cli_main(["base_waves", "--hand", "sim", "--grasp-dir", grasp_dir, "--settle-ticks", "1",
                     "--max-step", "0.2", *common]) == 0
    assert validate(out) == [] and len(_trajs(out)) == 2
    with TrajectoryFile(out) as f:
        assert f.meta["config"]["max_step_rad"] == 0.2 and f.meta["source"]["hand"] == "sim"
    capsys.readouterr()
    assert cli_main(["chaos_box", "--hand", "sim", "--balls", "5", *common]) == 2
    assert "physical box" in capsys.readouterr().err
    assert cli_main(["task_aware", "--hand", "sim", *common]) == 2
    assert cli_main(["base_waves", "--hand", "leap", "--domain", "latency", *common]) == 2
    assert "own domain" in capsys.readouterr().err
    missing = tmp_path / "none.h5"
    assert cli_main(["base_waves", "--hand", "leap", "--port", str(tmp_path / "ttyUSB9"), "--out", str(missing),
                     "--episodes", "1", "--quiet"]) == 1
    assert "cannot open Dynamixel port" in capsys.readouterr().err and not missing.exists()


def test_key_value_spelling_maps_to_options():
    from dexndm.collect.cli import key_value_args

    assert key_value_args(["strategy=chaos_box", "hand=leap", "out=a=b.h5", "noise_prob=0.5", "--seed", "3"]) == [
        "chaos_box", "--hand", "leap", "--out", "a=b.h5", "--noise-prob", "0.5", "--seed", "3"]
