"""Make a release copy of a zoo checkpoint: weights and ``dexndm_meta`` only (no optimiser or
loop state), floating-point weights optionally stored as float16 to halve the file.

    python experiments/strip_checkpoint.py IN.ckpt OUT.ckpt [--fp16]

The loaders (``load_generalist``, ``load_dynamics``, ``load_residual``) read exactly these two
keys and copy the weights into float32 modules, so a stripped file loads like the original
(with float16 rounding of the weights when ``--fp16``; a release is measured as stored).
"""

from __future__ import annotations

import argparse
import os

import torch


def strip(src: str, dst: str, fp16: bool = False) -> dict:
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    if "dexndm_meta" not in ckpt or "state_dict" not in ckpt:
        raise SystemExit(f"{src} has no state_dict/dexndm_meta: not a dexndm zoo checkpoint")
    state = {k: (v.half() if fp16 and v.is_floating_point() and not k.endswith(("mean", "std")) else v)
             for k, v in ckpt["state_dict"].items()}
    out = {"state_dict": state, "dexndm_meta": {**ckpt["dexndm_meta"], "stored_fp16": bool(fp16)}}
    tmp = f"{dst}.tmp"
    torch.save(out, tmp)
    os.replace(tmp, dst)
    return {"in_bytes": os.path.getsize(src), "out_bytes": os.path.getsize(dst)}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--fp16", action="store_true")
    a = p.parse_args()
    print(strip(a.src, a.dst, a.fp16))
