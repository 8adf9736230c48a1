"""experiments/strip_checkpoint.py, which makes the release copies in checkpoints/generalist and checkpoints/dynamics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dexndm.models.generalist import GeneralistModule, load_generalist
from tests.conftest import experiment_script


@pytest.fixture(scope="module")
def strip():
    return experiment_script("strip_checkpoint").strip


def _zoo_checkpoint(path: Path) -> GeneralistModule:
    """A GeneralistModule checkpoint as Lightning writes one: weights, dexndm_meta, and training state to drop."""
    torch.manual_seed(0)
    module = GeneralistModule(hidden=32, blocks=1, stats={"mean": [0.1], "std": [2.0]})
    ckpt = {"state_dict": module.state_dict(), "optimizer_states": [{"state": {0: torch.ones(1000)}}], "epoch": 3}
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return module


def test_stripped_copy_keeps_only_what_the_loader_reads_and_acts_alike(strip, tmp_path):
    module = _zoo_checkpoint(tmp_path / "full.ckpt")
    sizes = strip(str(tmp_path / "full.ckpt"), str(tmp_path / "slim.ckpt"))
    assert sizes["out_bytes"] < sizes["in_bytes"]
    slim = torch.load(tmp_path / "slim.ckpt", weights_only=True)
    assert set(slim) == {"state_dict", "dexndm_meta"} and slim["dexndm_meta"]["stored_fp16"] is False
    obs = torch.randn(5, module.net.obs_dim)
    net, _ = load_generalist(tmp_path / "slim.ckpt")
    module.eval()
    torch.testing.assert_close(net(obs), module.net(obs))

    strip(str(tmp_path / "full.ckpt"), str(tmp_path / "half.ckpt"), fp16=True)
    half = torch.load(tmp_path / "half.ckpt", weights_only=True)["state_dict"]
    assert half["net.mlp.out.weight"].dtype == torch.float16
    assert half["net.obs_mean"].dtype == torch.float32 and half["net.obs_std"].dtype == torch.float32  # stats exact
    net16, _ = load_generalist(tmp_path / "half.ckpt")
    assert next(net16.parameters()).dtype == torch.float32
    torch.testing.assert_close(net16(obs), module.net(obs), atol=2e-2, rtol=2e-2)


def test_a_file_that_is_no_zoo_checkpoint_is_refused_and_nothing_is_written(strip, tmp_path):
    torch.save({"model": {"w": torch.zeros(2)}}, tmp_path / "oracle.pt")
    with pytest.raises(SystemExit, match="not a dexndm zoo checkpoint"):
        strip(str(tmp_path / "oracle.pt"), str(tmp_path / "out.ckpt"))
    assert not (tmp_path / "out.ckpt").exists()
