"""The released reference checkpoints (checkpoints/*/CARD.md): they load as data, compute what
they computed when released (golden outputs), and the released generalist runs as a deploy
bundle for 10 simulated seconds on the emulated Dynamixel hand exactly as on SimHand.

A deliberate re-release regenerates the goldens: ``python tests/test_released_checkpoints.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dexndm.deploy.testing import RELEASED_GENERALIST

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).with_name("golden") / "released.json"
GENERALIST = RELEASED_GENERALIST
GENERALISTS = {"generalist": GENERALIST,
               "generalist_cylinders": ROOT / "checkpoints/generalist/generalist_cylinders.ckpt"}
DYNAMICS = {f"{v}{kind}": ROOT / f"checkpoints/dynamics/{v}{kind}_sim.ckpt"
            for kind in ("", "_cylinders") for v in ("jointwise", "fingerwise", "wholehand")}


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    from dexndm.hand import constants as hc
    from dexndm.sim.observations import deploy_layout

    g = torch.Generator().manual_seed(seed)
    pose = torch.as_tensor(hc.CANONICAL_POSE, dtype=torch.float32)
    q = pose + 0.05 * torch.randn(4, 10, 16, generator=g)
    obs = torch.zeros(4, deploy_layout().dim)
    hist = torch.stack([q, q + 0.01], dim=2).reshape(4, -1)           # (q, a) pairs, oldest first
    obs[:, :hist.shape[1]] = hist
    obs[:, -7:-3] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    obs[:, -3:] = torch.tensor([0.0, 0.0, 1.0])
    return {"obs": obs, "q_hist": q, "a_hist": q + 0.01}


def outputs() -> dict[str, list]:
    from dexndm.models.generalist import load_generalist
    from dexndm.models.lit_dynamics import load_dynamics

    x = _inputs()
    out = {}
    with torch.no_grad():
        for name, path in GENERALISTS.items():
            out[name] = load_generalist(path)[0](x["obs"]).tolist()
        for name, path in DYNAMICS.items():
            net, _ = load_dynamics(path)
            out[name] = net(x["q_hist"], x["a_hist"]).tolist()
    return out


@pytest.mark.parametrize("name", [*GENERALISTS, *DYNAMICS])
def test_released_outputs_match_the_goldens(name):
    golden = json.loads(GOLDEN.read_text())
    np.testing.assert_allclose(outputs()[name], golden[name], atol=1e-5, rtol=0,
                               err_msg=f"{name}: the released checkpoint (or the code) now computes something else; "
                                       "if deliberate, regenerate with `python tests/test_released_checkpoints.py`")


def test_released_generalist_bundle_on_the_emulated_hand(tmp_path, grasp_dir):
    from dexndm.apps.deploy import run
    from dexndm.data.validate import validate
    from dexndm.deploy.export import export_bundle
    from dexndm.hand import constants as hc

    bundle = export_bundle(str(GENERALIST), tmp_path / "bundle", None, domain="nominal", hand="sim")
    reports = {}
    for kind in ("emulated", "sim"):
        cfg = {"bundle": str(bundle), "wrist": "palm_up", "torch_threads": 1,
               "hand": {"kind": kind, "sim": {"grasp_dir": grasp_dir, "grasp_candidates": 32, "wrist": "palm_up",
                                              "quantize": kind == "sim"}},
               # watchdog: a loaded CI machine may stall a lockstep tick; the watchdog has its own test
               "loop": {"duration_s": 10.0, "axis": "+z", "wrist": "palm_up", "watchdog_s": 5.0},
               "commands": {"source": "none"},
               "record": {"enabled": True, "path": str(tmp_path / f"{kind}.h5"), "segment_ticks": 200}}
        reports[kind] = run(cfg)
        assert reports[kind]["reason"] == "duration" and reports[kind]["ticks"] == 200, reports[kind]
        assert reports[kind]["bus_errors"] == 0 and validate(tmp_path / f"{kind}.h5") == []
    import h5py

    with h5py.File(tmp_path / "emulated.h5") as a, h5py.File(tmp_path / "sim.h5") as b:
        ta, tb = (np.concatenate([f["traj"][k]["target"][()] for k in sorted(f["traj"])]) for f in (a, b))
    assert (ta >= hc.JOINT_LOWER - 1e-6).all() and (ta <= hc.JOINT_UPPER + 1e-6).all()
    np.testing.assert_allclose(ta, tb, atol=1e-6)
    assert reports["emulated"]["hand"]["rotation_rad"] == pytest.approx(reports["sim"]["hand"]["rotation_rad"], abs=1e-6)


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(outputs()))
    print(f"wrote {GOLDEN}", file=sys.stderr)


RELEASED_FILES = sorted(p for ext in ("*.pt", "*.ckpt") for p in (ROOT / "checkpoints").rglob(ext))


@pytest.mark.parametrize("path", RELEASED_FILES, ids=lambda p: str(p.relative_to(ROOT / "checkpoints")))
def test_every_released_file_is_named_by_its_card(path):
    """A checkpoint replaced without its card updated would carry metrics that are not its own."""
    from dexndm.files import file_sha256

    card = path.parent / "CARD.md"
    assert card.is_file(), f"{path} has no CARD.md beside it"
    assert file_sha256(path) in card.read_text(), f"{card} does not give {path.name}'s sha256 {file_sha256(path)}"
    if path.suffix == ".pt":                       # the oracles load as data and report their lineage
        from dexndm.rl.checkpoint import load_oracle

        _, meta = load_oracle(path)
        assert meta["lineage"]["frames"] >= meta["counters"]["frames"] > 0
