"""Side-by-side video of two policies on the same object, grasp and target domain (the
pipeline's "direct transfer vs DexNDM" clip).

Both runs use one environment with the same seed, so they start from the same grasp; the
policies are ``dexndm eval`` policy specs (``generalist:G[+residual:R]``), stepped exactly as the
evaluation steps them (base chain + residual sent through ``target_offset``).
Rendering needs offscreen OpenGL (``dexndm.sim.render.gl_available``); without it the
caller gets a clear reason and no file.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from dexndm.eval.policies import load_policy
from dexndm.sim import make_env
from dexndm.sim.render import gl_available, render_states


def policy_states(spec: str, env_cfg: dict, steps: int, seed: int) -> tuple[object, np.ndarray, float]:
    """(model of env 0, full-physics states [steps + 1, nstate], radians rotated about the axis)."""
    policy = load_policy(spec)
    env = make_env({**policy.env_requirements(), **env_cfg}, num_envs=1, seed=seed)
    try:
        policy.check_env(env)
        td = env.reset()
        model = env.physics.models[0]
        states = [env.physics.state[0].copy()]
        for _ in range(steps):
            nxt = env.step(policy.step_input(td, env))["next"]
            states.append(env.physics.state[0].copy())
            if bool(nxt["done"].any()):
                break
            td = nxt
        rotated = float(env.tracker.w_dot_k[0] * env.dt)
        return model, np.stack(states), rotated
    finally:
        env.close()


def side_by_side(left: str, right: str, env_cfg: dict, out: Path, *, steps: int = 200,
                 seed: int = 0, labels: tuple[str, str] = ("direct", "dexndm"), width: int = 320,
                 height: int = 240) -> dict:
    """Write ``out`` (GIF) with policy specs ``left`` and ``right`` side by side; returns what each rotated."""
    ok, reason = gl_available()
    if not ok:
        return {"video": None, "reason": reason}
    runs = [policy_states(p, env_cfg, steps, seed) for p in (left, right)]
    frames = [render_states(model, states[::2], width=width, height=height) for model, states, _ in runs]
    n = max(len(f) for f in frames)
    padded = [np.concatenate([f, np.repeat(f[-1:], n - len(f), axis=0)]) for f in frames]
    clip = np.concatenate(padded, axis=2)
    out.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(out, list(clip), duration=0.1, loop=0)
    return {"video": str(out), **{f"{label}_rot_rad": run[2] for label, run in zip(labels, runs)}}
