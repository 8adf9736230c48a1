"""The 20 Hz deploy loop end to end: bundle -> loop -> SimHand / emulated Dynamixel hand -> HDF5."""

from __future__ import annotations

import math
import os
import signal
import socket
import time

import h5py
import numpy as np
import pytest
import torch

from dexndm.data.validate import validate
from dexndm.deploy.commands import UdpCommands, parse_command
from dexndm.deploy.export import export_bundle
from dexndm.deploy.hands import make_hand
from dexndm.deploy.leap_hand import LIMIT_TICKS_HIGH, LIMIT_TICKS_LOW, rad_to_ticks
from dexndm.deploy.loop import DeployLoop, LoopConfig
from dexndm.deploy.recorder import SegmentRecorder, open_writer
from dexndm.deploy.testing import RELEASED_GENERALIST, write_tiny_checkpoints
from dexndm.hand import constants as hc

torch.set_num_threads(1)
TICK = 2 * math.pi / 4096
STEP = 0.25


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    gen, res = write_tiny_checkpoints(tmp_path_factory.mktemp("ckpt"))
    return export_bundle(gen, tmp_path_factory.mktemp("b") / "bundle", res, domain="nominal", hand="sim")


def sim_cfg(grasp_dir, **kw):
    return {"grasp_dir": grasp_dir, "grasp_candidates": 32, **kw}


def check_bounds(sent: np.ndarray, start: np.ndarray) -> None:
    """Every command finite, inside the joint limits, within STEP (+1 tick of rounding) of the previous."""
    assert np.isfinite(sent).all()
    assert (sent >= hc.JOINT_LOWER).all() and (sent <= hc.JOINT_UPPER).all()
    steps = np.abs(np.diff(np.vstack([start[None], sent]), axis=0))
    assert steps.max() <= STEP + TICK, steps.max()


def deploy(bundle, tmp_path, grasp_dir, kind: str, name: str, **sim_kw) -> tuple[dict, h5py.File]:
    from dexndm.apps.deploy import run

    cfg = {"bundle": str(bundle), "wrist": "palm_up", "torch_threads": 1,
           "hand": {"kind": kind, "sim": sim_cfg(grasp_dir, wrist="palm_up", **sim_kw)},
           "loop": {"duration_s": 10.0, "axis": "+z", "wrist": "palm_up", "keep_trace": False},
           "commands": {"source": "none"}, "record": {"enabled": True, "path": str(tmp_path / f"{name}.h5"),
                                                       "segment_ticks": 80}}
    return run(cfg), tmp_path / f"{name}.h5"


def _load(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        groups = [f["traj"][k] for k in sorted(f["traj"])]
        return {k: np.concatenate([g[k][()] if k != "q" else g[k][()][:-1] for g in groups]) for k in ("q", "target")} | \
            {"initial": groups[0]["initial_target"][()], "n": len(groups)}


def test_end_to_end_emulated_matches_sim_hand(bundle, tmp_path, grasp_dir) -> None:
    """10 simulated seconds on the emulated Dynamixel hand == the same bundle on SimHand directly."""
    emu, emu_path = deploy(bundle, tmp_path, grasp_dir, "emulated", "emulated")
    sim, sim_path = deploy(bundle, tmp_path, grasp_dir, "sim", "sim", quantize=True)
    for out, path in ((emu, emu_path), (sim, sim_path)):
        assert out["reason"] == "duration" and out["ticks"] == 200 and out["bus_errors"] == 0
        assert validate(path) == []                                          # the dataset schema holds
        assert (path.with_name("deploy.json")).exists()
    a, b = _load(emu_path), _load(sim_path)
    assert a["n"] == 3 and a["target"].shape == (200, 16)                    # 80 + 80 + 40 ticks
    check_bounds(a["target"].astype(np.float64), a["initial"].astype(np.float64))
    np.testing.assert_allclose(a["q"], b["q"], atol=1e-6)                   # same joint trajectory
    np.testing.assert_allclose(a["target"], b["target"], atol=1e-6)
    assert emu["hand"]["ticks"] == sim["hand"]["ticks"] >= 200               # commands arrived: physics ran per goal
    assert emu["hand"]["rotation_rad"] == pytest.approx(sim["hand"]["rotation_rad"], abs=1e-6)
    assert np.abs(np.diff(a["target"], axis=0)).max() > 1e-3                 # the policy did move the hand


def test_released_bundle_rotates_alike_on_the_emulated_and_the_sim_hand(tmp_path, grasp_dir) -> None:
    """The released generalist, exported, deployed for 10 simulated seconds from the start grasps it was
    trained from (grasp=palm_rest): it turns the object on both hands, by the same amount."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module("dexndm.conf", version_base=None):
        grasp = OmegaConf.to_container(compose("deploy", overrides=["grasp=palm_rest"]).env.grasp)
    bundle = export_bundle(RELEASED_GENERALIST, tmp_path / "released", hand="sim")
    emu, emu_path = deploy(bundle, tmp_path, grasp_dir, "emulated", "emulated", grasp=grasp)
    sim, sim_path = deploy(bundle, tmp_path, grasp_dir, "sim", "sim", quantize=True, grasp=grasp)
    for out, path in ((emu, emu_path), (sim, sim_path)):
        assert out["reason"] == "duration" and out["ticks"] == 200 and out["bus_errors"] == 0
        assert validate(path) == []
        assert not out["hand"]["dropped"]
        assert out["hand"]["rotation_rad"] > 0.2      # it turns the object (zero action: -0.01 +- 0.04 rad in 20 s)
    assert emu["hand"]["rotation_rad"] == pytest.approx(sim["hand"]["rotation_rad"], abs=1e-6)
    a, b = _load(emu_path), _load(sim_path)
    check_bounds(a["target"].astype(np.float64), a["initial"].astype(np.float64))
    np.testing.assert_allclose(a["q"], b["q"], atol=1e-6)


class WildPolicy:
    """Outputs NaN, +-inf, 1e9 and random garbage for both chain target and command."""

    def __init__(self) -> None:
        self.k = 0
        self.g = torch.Generator().manual_seed(0)

    def __call__(self, obs, q, prev):
        self.k += 1
        kind = self.k % 4
        if kind == 0:
            t = torch.full_like(prev, float("nan"))
            return t, t
        if kind == 1:
            return prev + 1e9, torch.full_like(prev, -1e9)
        if kind == 2:
            c = prev.clone()
            c[0, ::2] = float("inf")
            c[0, 1::2] = float("-inf")
            return c, c
        return torch.randn(prev.shape, generator=self.g) * 50, torch.randn(prev.shape, generator=self.g) * 50


@pytest.mark.parametrize("kind", ["sim", "emulated"])
def test_wild_policy_never_leaves_limits_or_step(kind, grasp_dir) -> None:
    with make_hand({"kind": kind, "sim": sim_cfg(grasp_dir)}) as hand:
        start = hand.last_command.copy()
        rep = DeployLoop(hand, WildPolicy(), LoopConfig(duration_s=2.0, keep_trace=True)).run()
        assert rep.reason == "duration" and rep.ticks == 40
        sent = np.array(rep.sent)
        check_bounds(sent, start)
        assert np.ptp(sent, axis=0).max() > 0.5                                  # it did try to go far
        if kind == "emulated":
            hand.read()                                                          # round trip: writes landed
            goals = np.array([hand.emulator.motors[i].get("goal_position", signed=True) for i in range(16)])
            assert (goals >= LIMIT_TICKS_LOW).all() and (goals <= LIMIT_TICKS_HIGH).all()
            assert (goals == rad_to_ticks(sent[-1])).all()                       # the last command arrived


def test_sigint_ramps_to_the_safe_pose(bundle, grasp_dir) -> None:
    from dexndm.deploy.export import load_bundle

    def hook(loop, tick):
        if tick == 5:
            os.kill(os.getpid(), signal.SIGINT)
    before = signal.getsignal(signal.SIGINT)
    with make_hand({"kind": "sim", "sim": sim_cfg(grasp_dir)}) as hand:
        cfg = LoopConfig(duration_s=5.0, stop_action="ramp", safe_pose="canonical", disable_after_ramp=True)
        rep = DeployLoop(hand, load_bundle(bundle), cfg, on_tick=hook).run()
        assert rep.reason == "sigint" and 5 <= rep.ticks <= 6
        np.testing.assert_allclose(rep.sent[-1], hc.clamp_to_limits(hc.CANONICAL_POSE), atol=1e-9)
        check_bounds(np.array(rep.sent), np.array(rep.sent[0]))
        assert not hand.torque_on
    assert signal.getsignal(signal.SIGINT) is before                             # handler restored


def test_udp_axis_and_estop(bundle, tmp_path, grasp_dir) -> None:
    from dexndm.deploy.export import load_bundle

    src = UdpCommands(port=0)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def hook(loop, tick):
        msg = {3: b"axis -x", 6: b"nonsense", 12: b"estop"}.get(tick)
        if msg:
            tx.sendto(msg, ("127.0.0.1", src.port))
            time.sleep(0.02)                                                     # let the datagram land
    with make_hand({"kind": "sim", "sim": sim_cfg(grasp_dir)}) as hand:
        writer = open_writer(tmp_path / "r.h5", domain=hand.describe(), source={"kind": "policy"}, config={})
        with writer:
            rec = SegmentRecorder(writer, 200)
            rep = DeployLoop(hand, load_bundle(bundle), LoopConfig(duration_s=5.0), recorder=rec, commands=src,
                             on_tick=hook).run()
        assert rep.reason == "estop" and rep.axis_changes == 1 and rep.ticks == 12
        assert not hand.torque_on                                               # estop_action: disable
    tx.close()
    assert validate(tmp_path / "r.h5") == []
    with h5py.File(tmp_path / "r.h5") as f:
        axes = [f["traj"][k]["axis"][()].tolist() for k in sorted(f["traj"])]
        lengths = [int(f["traj"][k].attrs["length"]) for k in sorted(f["traj"])]
    assert axes == [[0, 0, 1], [-1, 0, 0]] and sum(lengths) == 12
    assert src.rejected and "unknown command" in src.rejected[0]
    assert parse_command("axis 0 3 4").axis == pytest.approx((0, 0.6, 0.8))


def test_watchdog_stops_sending_after_a_stall(bundle, grasp_dir) -> None:
    from dexndm.deploy.export import load_bundle

    inner = load_bundle(bundle)
    stall = []

    def slow(obs, q, prev):
        if stall:
            stall.clear()
            time.sleep(0.4)
        return inner(obs, q, prev)

    def hook(loop, tick):
        if tick == 3:
            stall.append(True)
    with make_hand({"kind": "sim", "sim": sim_cfg(grasp_dir)}) as hand:
        rep = DeployLoop(hand, slow, LoopConfig(duration_s=2.0, watchdog_s=0.2), on_tick=hook).run()
        assert rep.reason == "watchdog" and rep.ticks == 3 and "not sent" in rep.message
        assert hand.ticks == len(rep.sent)                                      # nothing sent after the stall


def test_realtime_pacing(bundle, grasp_dir) -> None:
    from dexndm.deploy.export import load_bundle

    with make_hand({"kind": "sim", "sim": sim_cfg(grasp_dir)}) as hand:
        t = time.perf_counter()
        rep = DeployLoop(hand, load_bundle(bundle), LoopConfig(duration_s=0.5, realtime=True)).run()
        elapsed = time.perf_counter() - t
    assert rep.reason == "duration" and rep.ticks == 10
    assert elapsed >= 0.45, elapsed
    assert rep.timing["jitter_p99_ms"] < 50 and rep.timing["overruns"] == 0


def test_loop_config_validation() -> None:
    for bad, match in (({"stop_action": "explode"}, "stop_action"), ({"axis": "+w"}, "axis"),
                       ({"max_bus_errors": 0}, "max_bus_errors"), ({"safe_pose": [1, 2]}, "safe_pose"),
                       ({"wrist": "sideways"}, "wrist")):
        with pytest.raises(ValueError, match=match):
            LoopConfig(**bad)


@pytest.mark.parametrize("hand_name", ["sim", "emulated", "leap"])
def test_composed_hydra_config(bundle, tmp_path, grasp_dir, hand_name) -> None:
    """The shipped conf/deploy.yaml + conf/hand/*.yaml compose and validate; sim/emulated run briefly."""
    from hydra import compose, initialize_config_module

    from dexndm.apps.deploy import run
    from dexndm.deploy.hands import HandSpec

    with initialize_config_module("dexndm.conf", version_base=None):
        cfg = compose("deploy", overrides=[f"hand={hand_name}", f"bundle={bundle}", "loop.duration_s=0.5",
                                           f"record.path={tmp_path / 'r.h5'}", f"+hand.sim.grasp_dir={grasp_dir}"
                                           if hand_name == "leap" else f"hand.sim.grasp_dir={grasp_dir}",
                                           "wrist=palm_down"])
    from omegaconf import OmegaConf

    spec = HandSpec.from_dict(OmegaConf.to_container(cfg.hand, resolve=True))
    assert spec.kind == hand_name
    if hand_name == "leap":
        assert spec.leap.port == "/dev/ttyUSB0" and spec.leap.current_limit_ma == 350
        return
    assert spec.sim.wrist == "palm_down"                                        # interpolated from the root
    out = run(cfg)
    assert out["reason"] == "duration" and out["ticks"] == 10 and validate(tmp_path / "r.h5") == []
