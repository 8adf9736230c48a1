"""Evaluate an oracle checkpoint against a zero-action policy in its own env (deterministic mean).

    PYTHONPATH=. python experiments/eval_oracle.py CHECKPOINT [--envs 64] [--episodes 64] [--seed 1]

Prints episode means of RotR, TTF, RotP and radians rotated for the oracle and for zero action,
over the first ``--episodes`` episodes that end (400 steps or a drop).
"""

from __future__ import annotations

import argparse
import json

import torch

from dexndm.rl.checkpoint import load_oracle
from dexndm.sim import make_env
from dexndm.sim.metrics import EPISODE_METRICS, summarize


def evaluate(policy, env_cfg: dict, envs: int, episodes: int, seed: int) -> dict:
    env = make_env(env_cfg, num_envs=envs, seed=seed)
    td = env.reset()
    done = {m: [] for m in EPISODE_METRICS}
    while len(done["ttf"]) < episodes:
        with torch.no_grad():
            td["action"] = policy(td["observation"])
        td = _step(env, td, done)
    env.close()
    return {k: v["mean"] for k, v in summarize(done).items() if k in ("rot_r", "ttf", "rotp", "rot_rad")}


def _step(env, td, done):
    out, td = env.step_and_maybe_reset(td)
    ended = out["next", "episode_ended"].squeeze(-1)
    for k, m in enumerate(EPISODE_METRICS):
        done[m].extend(out["next", "episode_metrics"][ended, k].tolist())
    return td


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--envs", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    model, meta = load_oracle(args.checkpoint)
    env_cfg = meta["config"]["env"]
    result = {
        "oracle": evaluate(model.act, env_cfg, args.envs, args.episodes, args.seed),
        "zero_action": evaluate(lambda obs: torch.zeros(obs.shape[0], 16), env_cfg, args.envs, args.episodes, args.seed),
        "frames": meta["counters"]["frames"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
