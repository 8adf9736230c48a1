"""Generalist policy (DexNDM Sec. 3.2, A.1): ResidualMLP structure, BC training, checkpoints."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dexndm.hand.constants import JOINT_NAMES
from dexndm.models.generalist import (ACTION_SCALE, GeneralistModule, GeneralistPolicy, ResidualMLP,
                                      load_generalist)
from dexndm.sim.observations import deploy_layout

torch.set_num_threads(1)
D = deploy_layout().dim


def test_residual_mlp_structure():
    for blocks in (0, 2, 5):
        m = ResidualMLP(10, 7, hidden=16, blocks=blocks)
        linears = [x for x in m.modules() if isinstance(x, nn.Linear)]
        assert len(linears) == 2 + 3 * blocks
        assert all(l.in_features == 16 and l.out_features == 16 for l in linears[1:-1])
        assert m(torch.zeros(4, 10)).shape == (4, 7)
    # the block is y = ReLU(NN1(x) + NN3(ReLU(NN2(x))))
    m = ResidualMLP(3, 2, hidden=8, blocks=1)
    b, x = m.blocks[0], torch.randn(5, 8)
    ref = torch.relu(b.nn1(x) + b.nn3(torch.relu(b.nn2(x))))
    assert torch.allclose(b(x), ref)
    assert ResidualMLP(D, 16).inp.out_features == 1024 and len(ResidualMLP(D, 16).blocks) == 5  # paper sizes


class _Dicts(Dataset):
    def __init__(self, obs, act):
        self.obs, self.act = obs, act

    def __len__(self):
        return len(self.obs)

    def __getitem__(self, i):
        return {"obs": self.obs[i], "action": self.act[i]}


class _DM(L.LightningDataModule):
    """Synthetic BC data: obs with large offset/scale, action = 0.8 tanh(linear(normalised last 64 obs dims))."""

    def __init__(self, n=4096, n_val=512):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        mean, std = 3.0 + torch.randn(D, generator=g), 0.5 + torch.rand(D, generator=g) * 4
        obs = mean + std * torch.randn(n, D, generator=g)
        w = torch.zeros(D, 16)
        w[-64:] = torch.randn(64, 16, generator=g) / 8     # newest proprio steps, wrist quat, axis
        act = 0.8 * torch.tanh((obs - mean) / std @ w)
        self.train_set, self.val_set = _Dicts(obs[:-n_val], act[:-n_val]), _Dicts(obs[-n_val:], act[-n_val:])
        self.stats = {"obs": {"mean": obs[:-n_val].mean(0).tolist(), "std": obs[:-n_val].std(0).tolist()},
                      "joint_order": list(JOINT_NAMES)}

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=128, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=256)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    L.seed_everything(0, verbose=False)
    dm, model = _DM(), GeneralistModule(hidden=64, blocks=2, lr=2e-3)
    tmp = tmp_path_factory.mktemp("gen")
    trainer = L.Trainer(max_epochs=8, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, enable_checkpointing=False)
    first = trainer.validate(model, datamodule=dm, verbose=False)[0]["val/loss"]
    trainer.fit(model, datamodule=dm)
    path = tmp / "gen.ckpt"
    trainer.save_checkpoint(path)
    return model, dm, trainer, first, path


def test_bc_learns(fitted):
    model, dm, trainer, first, _ = fitted
    m = trainer.callback_metrics
    last = float(m["val/loss"])
    assert "train/loss_epoch" in m
    assert last < 0.3 * first, (first, last)
    print(f"generalist BC val loss {first:.4f} -> {last:.4f}")
    assert torch.allclose(model.net.obs_mean, torch.tensor(dm.stats["obs"]["mean"]))   # stats from the datamodule
    out = model.act(torch.full((3, D), 1e4))
    assert out.abs().max() <= 1.0


def test_checkpoint_roundtrip(fitted):
    model, dm, _, _, path = fitted
    net, meta = load_generalist(path)
    assert isinstance(net, GeneralistPolicy) and not net.training
    assert meta["layout"] == deploy_layout().to_dict() and meta["joint_order"] == list(JOINT_NAMES)
    assert meta["action_scale"] == pytest.approx(ACTION_SCALE) and meta["control_rate_hz"] == 20.0
    x = dm.val_set.obs[:8]
    model.eval()
    assert torch.allclose(net(x), model(x), atol=1e-6)
    ckpt = torch.load(path, weights_only=True)                     # plain data only
    assert "dexndm_meta" in ckpt


def test_tampered_layout_refused(fitted, tmp_path):
    *_, path = fitted
    ckpt = torch.load(path, weights_only=True)
    fields = ckpt["dexndm_meta"]["layout"]["fields"]
    fields[-1][1] = 4                                               # rotation_axis width 3 -> 4
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(ValueError, match="layout mismatch"):
        load_generalist(bad)
    ckpt["dexndm_meta"]["format"] = "other"
    torch.save(ckpt, bad)
    with pytest.raises(ValueError, match="not a dexndm generalist"):
        load_generalist(bad)
