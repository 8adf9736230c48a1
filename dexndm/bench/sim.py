"""Simulation speed: the TorchRL env against MuJoCo alone on the same models and threads.

``env_steps_per_s``  control steps/s of ``RotationEnv`` (N envs, random actions, resets
                     included), rotating cylinders.
``raw_steps_per_s``  the same N models advanced by ``mujoco.rollout`` alone, replaying the
                     controls the env sent, in one call: no Python between control steps.
``ratio``            env / raw, measured in the same run.  Goal >= 0.75.
The ``chaos_*`` keys give the same figures for the Chaos Box (60 balls) when available.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from mujoco import rollout

from dexndm.sim import make_env
from dexndm.sim.physics import CONTROL_SPEC


def _raw_steps_per_s(models, initial: np.ndarray, control: np.ndarray, nthread: int, substeps: int) -> float:
    """Control steps/s of MuJoCo alone replaying ``control`` [N, steps * substeps, ncontrol]
    from ``initial`` [N, nstate] in one rollout call: no Python between control steps."""
    import mujoco

    n, steps = len(models), control.shape[1] // substeps
    datas = [mujoco.MjData(models[0]) for _ in range(nthread)]
    with rollout.Rollout(nthread=nthread) as pool:
        pool.rollout(models, datas, initial, control[:, :substeps], control_spec=CONTROL_SPEC)  # warm-up
        start = time.perf_counter()
        pool.rollout(models, datas, initial, control, control_spec=CONTROL_SPEC)
        elapsed = time.perf_counter() - start
    return n * steps / elapsed


def _measure(env, steps: int, nthread: int) -> dict[str, float]:
    """Env rate with random actions, and MuJoCo alone replaying the very controls the env sent."""
    n = env.batch_size[0]
    physics = env.physics
    gen = torch.Generator().manual_seed(0)

    def policy(td):
        td["action"] = (torch.rand(n, 16, generator=gen) * 2 - 1) * 0.5
        return td

    env.rollout(5, policy=policy, break_when_any_done=False)  # warm-up
    initial, models = physics.state.copy(), list(physics.models)
    sent = []
    inner = physics.step

    def recording_step(ctrl, xfrc=None):
        out = inner(ctrl, xfrc)
        sent.append(physics._control.copy())
        return out

    physics.step = recording_step
    try:
        start = time.perf_counter()
        env.rollout(steps, policy=policy, break_when_any_done=False)
        env_rate = n * steps / (time.perf_counter() - start)
    finally:
        physics.step = inner
    control = np.concatenate(sent, axis=1)
    raw_rate = _raw_steps_per_s(models, initial, control, nthread, physics.substeps)
    return {"env_steps_per_s": env_rate, "raw_steps_per_s": raw_rate, "ratio": env_rate / raw_rate}


def run(quick: bool = False, num_envs: int = 256, nthread: int = 2) -> dict:
    n, steps = (32, 20) if quick else (num_envs, 100)
    env = make_env(num_envs=n, nthread=nthread, object_set="cylinders", wrist="random", axes="all", seed=0)
    result = {"num_envs": n, "nthread": nthread, "steps": steps, **_measure(env, steps, nthread)}
    env.close()
    chaos = _chaos(n, steps, nthread)
    result.update({f"chaos_{k}": v for k, v in chaos.items()})
    return result


def _chaos(n: int, steps: int, nthread: int) -> dict[str, float]:
    from dexndm.sim.chaos_box import ChaosBoxConfig, ChaosBoxEnv

    env = ChaosBoxEnv(ChaosBoxConfig(num_envs=n, nthread=nthread, num_balls=60, seed=0))
    out = _measure(env, steps, nthread)
    env.close()
    return out
