"""Oracle PPO speed (DexNDM Sec. 3.1 training): where a training iteration's time goes.

Two short real training runs (256 envs, default PPO settings, one warm-up iteration each):

``fresh/``    a new policy on cylinders, palm up, +z: the first minutes of a run, when nearly
              every episode ends in a drop within tens of steps and resets dominate;
``trained/``  the same training continued from a released oracle (``--trained``, default the
              palm-up cylinder oracle), in the environment it was trained in: objects are held
              for whole episodes, which is what most of a run's wall time looks like.

Per phase: ``collect_frames_per_s`` (env steps/s while collecting, policy inference included),
``update_frames_per_s`` (frames/s through the values, GAE and all PPO epochs), ``frames_per_s``
(whole iterations), ``outside_physics_fraction`` (share of the iterations' wall time spent outside
the physics backend's ``step``, the issue's goal: < 0.35), ``physics_fraction_of_collect`` and
``episodes_per_iteration``.  The top-level ``outside_physics_fraction`` is the trained phase's.
Training runs log the same fraction per iteration (``perf/outside_physics_fraction``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from dexndm.rl.checkpoint import from_json, load_checkpoint, with_legacy_values
from dexndm.rl.config import resolve_precision

#: The oracle the trained phase continues (its env config is used as trained).
TRAINED_ORACLE = Path(__file__).resolve().parents[2] / "checkpoints/oracle/cylinders_palm_up_z_tip/last.pt"


def _phase(env: dict, ppo: dict, init_from: str | None, device: str, iters: int) -> tuple[dict, dict]:
    """Timings of ``iters`` iterations after a warm-up, and what ran them (horizon, resolved device)."""
    from dexndm.rl.ppo import PPOTrainer

    with tempfile.TemporaryDirectory() as out:
        cfg = {"env": env, "ppo": ppo, "out_dir": out, "resume": "never", "device": device, "progress": False,
               "tensorboard": False, "print_every": 0, "init_from": init_from}
        trainer = PPOTrainer(cfg)
        try:
            trainer.iterate()  # warm-up: first-call allocations
            physics = trainer.env.physics
            inside_before = physics.step_seconds
            collect = update = 0.0
            episodes = 0
            per_batch = trainer.frames_per_batch
            start = time.perf_counter()
            for _ in range(iters):
                row = trainer.iterate()
                collect += per_batch / row["perf/collect_fps"]
                update += per_batch / row["perf/update_fps"]
                episodes += row["episode/count"]
            wall = time.perf_counter() - start
            inside = physics.step_seconds - inside_before
        finally:
            trainer.close()
    frames = iters * per_batch
    timings = {"collect_frames_per_s": frames / collect, "update_frames_per_s": frames / update,
               "frames_per_s": frames / wall, "outside_physics_fraction": 1.0 - inside / wall,
               "physics_fraction_of_collect": inside / collect, "episodes_per_iteration": episodes / iters}
    return timings, {"horizon": trainer.ppo.horizon, "device": str(trainer.device)}


def run(quick: bool = False, num_envs: int = 256, iterations: int = 3, device: str = "auto",
        precision: str = "auto", trained: str | Path = TRAINED_ORACLE, env: dict | None = None) -> dict:
    """Both phases at ``ppo.precision=precision`` (``auto`` resolved as training resolves it); ``quick``: 32
    envs, 2 iterations, fresh phase only; ``env`` overrides the fresh phase's env settings."""
    from dexndm.rl.ppo import resolve_device

    precision = resolve_precision(precision, resolve_device(device))
    n, iters = (32, 2) if quick else (num_envs, iterations)
    fresh_env = {"num_envs": n, "nthread": 2, "object_set": "cylinders", "wrist": "palm_up", "axes": "+z",
                 **(env or {})}
    path = Path(trained)
    if not quick and not path.exists():
        raise FileNotFoundError(f"bench ppo: no oracle at {path} for the trained phase; pass trained=PATH "
                                "(a dexndm oracle checkpoint) or run with quick=True")
    fresh, ran = _phase(fresh_env, {"precision": precision}, None, device, iters)
    result = {"num_envs": fresh_env["num_envs"], "iterations": iters, "precision": precision, **ran,
              "torch_threads": torch.get_num_threads()}
    phases = {"fresh": fresh}
    if not quick:
        saved = with_legacy_values(from_json(load_checkpoint(path)["config"]))
        trained_env = {**saved["env"], "num_envs": n, "nthread": 2}
        trained_ppo = {**saved["ppo"], "precision": precision}
        phases["trained"], _ = _phase(trained_env, trained_ppo, str(path), device, iters)
        result["trained_oracle"] = str(path)
    for name, values in phases.items():
        result.update({f"{name}/{key}": value for key, value in values.items()})
    result["outside_physics_fraction"] = phases["trained" if "trained" in phases else "fresh"][
        "outside_physics_fraction"]
    return result
