"""Clean shutdown of multi-process training on CPU (gloo).

Lightning destroys an NCCL process group at exit but leaves a gloo one to the
interpreter's teardown, where a rank can abort ("terminate called without an active
exception") after training finished, failing the whole ``ddp_spawn`` fit. Each rank
therefore meets the others at a barrier and destroys its group once fitting ends.
"""

from __future__ import annotations

import lightning as L
import torch.distributed as dist
from lightning.pytorch.trainer.states import TrainerStatus


class CloseProcessGroup(L.Callback):
    """At the end of ``fit``, every rank waits for the others (if fit finished), then destroys its gloo group.

    A later ``trainer.fit``/``test`` on the same trainer starts a new group (Lightning initialises
    one whenever none is up). NCCL groups are left to Lightning, which destroys them at exit.
    """

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not (dist.is_available() and dist.is_initialized()):
            return
        if dist.get_backend() != "gloo":
            return
        if trainer.state.status == TrainerStatus.FINISHED:  # after a failure a peer may never reach the barrier
            dist.barrier()
        dist.destroy_process_group()
