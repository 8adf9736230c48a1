"""Two-process DDP on CPU (gloo): ranks read different shards and end with identical weights."""

from __future__ import annotations

import hashlib
import json

import lightning as L
import torch.distributed as dist
import pytest

from datamodules import TrajectoryDataModule
from dexndm.data.synthetic import write_random_file
from dexndm.models.distributed import CloseProcessGroup
from dexndm.models.lit_dynamics import DynamicsModule


class RecordShards(L.Callback):
    """Each rank writes the samples it trained on, a digest of its final weights and whether its group is up."""

    def __init__(self, out_dir):
        self.out_dir, self.seen = str(out_dir), []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen += [[int(f), int(n), int(t)] for f, n, t in zip(batch["file"], batch["traj"], batch["t"])]

    def on_train_end(self, trainer, pl_module):
        digest = hashlib.sha256()
        for p in pl_module.parameters():
            digest.update(p.detach().cpu().numpy().tobytes())
        self.weights = digest.hexdigest()

    def teardown(self, trainer, pl_module, stage):  # runs after CloseProcessGroup's (callback order)
        with open(f"{self.out_dir}/rank{trainer.global_rank}.json", "w") as fh:
            json.dump({"seen": self.seen, "weights": self.weights, "group_up": dist.is_initialized()}, fh)


@pytest.mark.slow
def test_two_process_ddp_shards_and_identical_weights(tmp_path):
    data = write_random_file(tmp_path / "sim.h5", 16, seed=0, lengths=(16, 24))
    dm = TrajectoryDataModule(files=[{"path": str(data), "name": "sim"}], kind="dynamics", window=4, batch_size=16,
                              split_path=str(tmp_path / "split.json"), with_ids=True, chunk_trajectories=2)
    model = DynamicsModule(variant="jointwise", window=4, hidden=16, depth=1, lr=1e-2)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        callbacks=[CloseProcessGroup(), RecordShards(tmp_path)], limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    s0, s1 = {tuple(x) for x in r0["seen"]}, {tuple(x) for x in r1["seen"]}
    assert s0 and s1 and not (s0 & s1)                      # each rank its own shard
    assert {n for _, n, _ in s0} .isdisjoint({n for _, n, _ in s1})  # whole trajectories per rank
    assert r0["weights"] == r1["weights"]                   # gradients were all-reduced
    assert not r0["group_up"] and not r1["group_up"]       # each rank closed its gloo group before exit
