"""Oracle PPO speed (DexNDM Sec. 3.1 training): where a training iteration's time goes.

A short real training run (cylinders, palm up, +z, default PPO config) after one
warm-up iteration, with ``env.physics.step`` wrapped to time MuJoCo's stepping:

``collect_frames_per_s``      env steps/s while collecting (policy inference included)
``update_frames_per_s``       frames/s through GAE + all PPO epochs
``frames_per_s``              frames/s of whole iterations
``outside_physics_fraction``  share of the iterations' wall time spent outside
                              ``physics.step`` (goal < 0.35)
``physics_fraction_of_collect``  share of collection spent inside ``physics.step``
"""

from __future__ import annotations

import tempfile
import time

import torch


def run(quick: bool = False, num_envs: int = 256, iterations: int = 3, device: str = "auto") -> dict:
    from dexndm.rl.ppo import PPOTrainer

    n, iters = (32, 2) if quick else (num_envs, iterations)
    with tempfile.TemporaryDirectory() as out:
        cfg = {"env": {"num_envs": n, "nthread": 2, "object_set": "cylinders", "wrist": "palm_up", "axes": "+z"},
               "ppo": {}, "out_dir": out, "resume": "never", "device": device, "progress": False,
               "tensorboard": False, "print_every": 0}
        trainer = PPOTrainer(cfg)
        physics = trainer.env.physics
        inner = physics.step
        inside = [0.0]

        def timed_step(*args, **kwargs):
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                inside[0] += time.perf_counter() - t

        try:
            trainer.iterate()  # warm-up: first-call allocations
            physics.step = timed_step
            collect = update = 0.0
            per_batch = trainer.frames_per_batch
            start = time.perf_counter()
            for _ in range(iters):
                row = trainer.iterate()
                collect += per_batch / row["perf/collect_fps"]
                update += per_batch / row["perf/update_fps"]
            wall = time.perf_counter() - start
        finally:
            physics.step = inner
            trainer.close()
    frames = iters * trainer.frames_per_batch
    return {
        "num_envs": n, "horizon": trainer.ppo.horizon, "iterations": iters, "device": str(trainer.device),
        "torch_threads": torch.get_num_threads(),
        "collect_frames_per_s": frames / collect, "update_frames_per_s": frames / update,
        "frames_per_s": frames / wall, "outside_physics_fraction": 1.0 - inside[0] / wall,
        "physics_fraction_of_collect": inside[0] / collect,
    }
