"""Reading the zoo's Lightning checkpoints as data (``torch.load(..., weights_only=True)``).

Every LightningModule of ``dexndm.models`` adds ``dexndm_meta`` (format tag, joint order,
model config...) in ``on_save_checkpoint``; this is the one place that checks it, and
``write_checkpoint`` the one that writes such a file without a Trainer (hand-built modules).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from dexndm.files import atomic_path
from dexndm.hand.constants import JOINT_NAMES


def read_checkpoint(path: str | os.PathLike, fmt: str, what: str, saved_by: str,
                    prefix: str = "net.") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict of the ``prefix`` submodule without the prefix, dexndm_meta) of a checkpoint.

    Refuses, with what to do, a missing file, a checkpoint of another kind or format, and one
    saved with another joint order.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} checkpoint {str(path)!r} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    meta = ckpt.get("dexndm_meta") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise ValueError(f"{str(path)!r} is not a dexndm {what} checkpoint (no dexndm_meta with format {fmt!r}); "
                         f"save it from {saved_by}")
    if list(meta.get("joint_order", [])) != list(JOINT_NAMES):
        raise ValueError(f"{str(path)!r} uses joint order {meta.get('joint_order')}, this code {list(JOINT_NAMES)}; "
                         "permute with dexndm.hand.constants before use")
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    return state, meta


def write_checkpoint(module: Any, path: str | os.PathLike) -> str:
    """Save a LightningModule of the zoo as a checkpoint ``read_checkpoint`` accepts, without a Trainer:
    its state dict plus the ``dexndm_meta`` its ``on_save_checkpoint`` adds; written whole or not at all."""
    ckpt: dict[str, Any] = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return path
