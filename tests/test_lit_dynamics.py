"""DynamicsModule (DexNDM Sec. 3.3, Appendix C): training, best checkpoint, fine-tuning, load_dynamics."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from datamodules import TrajectoryDataModule
from dexndm.data.synthetic import write_random_file
from dexndm.hand.constants import JOINT_NAMES
from dexndm.models.dynamics import STAT_KEYS
from dexndm.models.lit_dynamics import DynamicsModule, best_checkpoint_callback, load_dynamics

torch.set_num_threads(1)
W = 4
SMALL = dict(window=W, hidden=32, depth=1, lr=3e-3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("litdyn")
    sim = write_random_file(d / "sim.h5", 48, seed=0, lengths=(16, 24), optional=False)
    real = write_random_file(d / "real.h5", 3, seed=500, lengths=(12, 16), optional=False)
    return str(sim), str(real), d


def _dm(data, **kw):
    sim, real, d = data
    return TrajectoryDataModule(sim, kind="dynamics", window=W, batch_size=32, split=0.75, seed=0,
                                split_path=d / "split.json", eval_files={"real": real}, **kw)


def _trainer(tmp, epochs=2, extra=()):
    return L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0, limit_train_batches=20,
                     callbacks=[best_checkpoint_callback(tmp), *extra])


class _Record(L.Callback):
    def __init__(self):
        self.val = []

    def on_validation_end(self, trainer, pl_module):
        self.val.append(float(trainer.callback_metrics["val/loss"]))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One short fit per variant: (model, datamodule, best checkpoint, recorded val losses)."""
    out = {}
    for variant in ("jointwise", "wholehand"):
        L.seed_everything(0, verbose=False)
        tmp = tmp_path_factory.mktemp(variant)
        dm, model, rec = _dm(data), DynamicsModule(variant, **SMALL), _Record()
        trainer = _trainer(tmp, extra=[rec])
        trainer.validate(model, datamodule=dm, verbose=False)     # untrained val loss
        trainer.fit(model, datamodule=dm)
        out[variant] = (model, dm, trainer.checkpoint_callback.best_model_path, rec.val, trainer)
    return out


@pytest.mark.parametrize("variant", ["jointwise", "wholehand"])
def test_training_improves_and_logs(trained, variant):
    model, dm, best, losses, trainer = trained[variant]
    assert len(losses) == 3                          # validate + 2 epochs
    # seeded run: val loss falls at every validation (untrained, epoch 0, epoch 1)
    assert losses[0] > losses[1] > losses[2] and losses[2] < 0.9 * losses[0], losses
    m = trainer.callback_metrics
    for name in dm.val_names:
        assert {f"{name}/loss", f"{name}/joint_err", f"{name}/joint_err_15"} <= set(m)
    errs = torch.stack([m[f"val/joint_err_{j}"] for j in range(16)])
    assert torch.isclose(errs.mean(), m["val/joint_err"], rtol=1e-4)
    assert "train/loss_epoch" in m
    # stats come from the datamodule's train split
    assert torch.allclose(model.net.q_mean, torch.tensor(dm.stats["q_hist"]["mean"]))
    assert (model.net.dq_std > 0).all() and not torch.allclose(model.net.dq_std, torch.ones(16))


@pytest.mark.parametrize("variant", ["jointwise", "wholehand"])
def test_best_checkpoint_is_data_with_meta(trained, variant):
    model, _, best, losses, _ = trained[variant]
    assert best and "best-" in best
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    meta = ckpt["dexndm_meta"]
    assert meta["joint_order"] == list(JOINT_NAMES) and meta["variant"] == variant and meta["window"] == W
    assert meta["format"] == "dexndm.dynamics.v1" and meta["control_rate_hz"] == 20.0
    for key in STAT_KEYS:
        assert torch.equal(ckpt["state_dict"][f"net.{key}"], getattr(model.net, key))
    assert ckpt["callbacks"]                         # ModelCheckpoint state also loads as data


def test_finetune_starts_from_pretrained_and_refuses_mismatch(trained, data, tmp_path):
    model, _, best, _, _ = trained["jointwise"]
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    ft = DynamicsModule("jointwise", pretrained=best, **SMALL)
    for key in ("net.net.net.0.weight", "net.dq_std", "net.q_mean"):
        assert torch.equal(ft.state_dict()[key], state[key])
    # the fine-tuned model keeps the pretrained stats through fit on other data
    q_mean = ft.net.q_mean.clone()
    _trainer(tmp_path, epochs=1).fit(ft, datamodule=_dm(data))
    assert torch.equal(ft.net.q_mean, q_mean)
    assert not torch.equal(ft.state_dict()["net.net.net.0.weight"], state["net.net.net.0.weight"])
    with pytest.raises(ValueError, match="variant"):
        DynamicsModule("wholehand", pretrained=best, **SMALL)
    with pytest.raises(ValueError, match="window"):
        DynamicsModule("jointwise", pretrained=best, **{**SMALL, "window": W + 1})


@pytest.mark.parametrize("variant", ["jointwise", "wholehand"])
def test_load_dynamics_reproduces_module(trained, variant):
    model, dm, best, _, _ = trained[variant]
    lit = DynamicsModule.load_from_checkpoint(best, map_location="cpu", weights_only=True).eval()
    net, meta = load_dynamics(best)
    assert type(net).__name__ == type(model.net).__name__ and meta["config"]["hidden"] == 32
    batch = next(iter(dm.val_dataloader()[0]))
    with torch.no_grad():
        expected = lit(batch["q_hist"], batch["a_hist"])
        got = net(batch["q_hist"], batch["a_hist"])
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert (got - batch["q_next"]).abs().mean() < 0.5     # a sane prediction in radians


def test_missing_stats_and_bad_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError):
        DynamicsModule("jointwise", pretrained=str(tmp_path / "none.ckpt"), **SMALL)
    torch.save({"state_dict": {}}, tmp_path / "x.ckpt")
    with pytest.raises(ValueError, match="dexndm_meta"):
        load_dynamics(tmp_path / "x.ckpt")
