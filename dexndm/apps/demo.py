"""``dexndm demo``: roll out the rotation task in MuJoCo, report metrics, render a GIF.

Until the learned pipeline exists this is the main job: it builds the batched TorchRL
environment (generating grasp caches on first use), drives it with a simple policy,
and writes ``demo.json`` (episode metrics, blow-ups, speed) and ``demo.gif`` to the run
directory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from dexndm.apps import hydra_app
from dexndm.sim import make_env
from dexndm.sim.metrics import EPISODE_METRICS, summarize
from dexndm.sim.reward import TERMS

POLICIES = ("zero", "random")


def run(cfg: DictConfig) -> dict:
    """Roll out ``cfg.steps`` control steps; returns the summary written to demo.json."""
    if cfg.policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {cfg.policy!r}")
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = make_env(cfg.env)
    n = env.batch_size[0]
    generator = torch.Generator().manual_seed(int(cfg.env.seed))
    frames: list[tuple[object, np.ndarray]] = []
    finished: dict[str, list[float]] = {m: [] for m in EPISODE_METRICS}

    def policy(td):
        if cfg.policy == "random":
            td["action"] = torch.rand(n, 16, generator=generator) * 2 - 1
        else:
            td["action"] = torch.zeros(n, 16)
        return td

    def record(env_, td):
        frames.append((env_.physics.models[0], env_.physics.state[0].copy()))
        ended = td["next", "episode_ended"].squeeze(-1)
        for k, m in enumerate(EPISODE_METRICS):
            finished[m].extend(td["next", "episode_metrics"][ended, k].tolist())

    start = time.perf_counter()
    rollout = env.rollout(int(cfg.steps), policy=policy, callback=record, break_when_any_done=False,
                          auto_reset=True)
    elapsed = time.perf_counter() - start
    terms = dict(zip(TERMS, rollout["next", "reward_terms"].mean(dim=(0, 1)).tolist()))
    summary = {
        "config": OmegaConf.to_container(cfg.env, resolve=True),
        "steps": int(cfg.steps), "num_envs": n, "env_steps_per_s": n * int(cfg.steps) / elapsed,
        "episodes_finished": summarize({k: v for k, v in finished.items() if v}),
        "mean_reward": float(rollout["next", "reward"].mean()), "reward_terms": terms,
        "blowups": env.blowups,
    }
    if cfg.render:
        summary["video"] = _render(frames, out_dir / "demo.gif", cfg)
    (out_dir / "demo.json").write_text(json.dumps(summary, indent=2, default=str))
    env.close()
    return summary


def _render(frames, path: Path, cfg) -> str | None:
    from dexndm.sim.render import gl_available, render_states, save_video

    ok, reason = gl_available()
    if not ok:
        print(f"[demo] not rendering: {reason}")
        return None
    images, start = [], 0
    for k in range(1, len(frames) + 1):  # one render call per stretch with the same model
        if k == len(frames) or frames[k][0] is not frames[start][0]:
            states = np.stack([s for _, s in frames[start:k]])
            images.append(render_states(frames[start][0], states, width=cfg.width, height=cfg.height))
            start = k
    save_video(np.concatenate(images), path)
    return str(path)


def _run_and_print(cfg: DictConfig) -> None:
    summary = run(cfg)
    done = summary["episodes_finished"]
    print(f"[demo] {summary['num_envs']} envs x {summary['steps']} steps at "
          f"{summary['env_steps_per_s']:.0f} env-steps/s; episodes finished: "
          f"{done.get('ttf', {}).get('n', 0)}; blow-ups: {summary['blowups']}; output: {cfg.out_dir}")


main = hydra_app("demo", _run_and_print)
