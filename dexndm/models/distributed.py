"""Clean shutdown of multi-process training on CPU (gloo).

Lightning destroys an NCCL process group at exit but leaves a gloo one to the
interpreter's teardown, where a rank can abort ("terminate called without an active
exception") after training finished, failing the whole ``ddp_spawn`` fit. Each rank
therefore meets the others at a barrier and destroys its group once fitting ends.
"""

from __future__ import annotations

import lightning as L
import torch.distributed as dist


class CloseProcessGroup(L.Callback):
    """At the end of ``fit``, every rank waits for the others, then destroys its gloo process group.

    A later ``trainer.fit``/``test`` on the same trainer starts a new group (Lightning initialises
    one whenever none is up). NCCL groups are left to Lightning, which destroys them at exit.
    """

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not (dist.is_available() and dist.is_initialized()):
            return
        if dist.get_backend() != "gloo":
            return
        dist.barrier()
        dist.destroy_process_group()
