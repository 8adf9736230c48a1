"""Where an oracle's episodes end: drop step and the object's displacement at the drop.

    PYTHONPATH=. python experiments/oracle_drops.py CHECKPOINT [--envs 48] [--seed 3]

Runs the first episode of ``--envs`` environments with the deterministic policy and with zero
action, in the checkpoint's own env, and prints per policy: TTF, how many episodes ended early,
the drop steps, and the displacement from the start pose at the drop split into the part along
gravity (sinking) and the lateral part, plus the mean displacement vector in the hand frame
(+x wrist to fingertips, +z out of the palm); and how many fingertips were on the object (mean
over steps) in episodes held to the end and in those that ended early, 20 steps before the drop.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from dexndm.rl.checkpoint import load_oracle
from dexndm.sim import make_env
from dexndm.sim.reward import TERMS

TIP = TERMS.index("tip_contact")


def first_episodes(policy, env_cfg: dict, envs: int, seed: int) -> dict:
    env = make_env(env_cfg, num_envs=envs, seed=seed)
    td = env.reset()
    steps = env.cfg.episode_steps
    alive = np.ones(envs, bool)
    end_step = np.full(envs, steps)
    shift_at_end = np.zeros((envs, 3))
    gravity = env.gravity_dir.copy()
    oq = env.sampler.object_qpos
    tips = np.full((steps, envs), np.nan)       # fingertips on the object, while the episode lasts
    for t in range(steps):
        with torch.no_grad():
            td["action"] = policy(td["observation"])
        td = env.step(td)["next"]
        tips[t, alive] = 4 * td["reward_terms"][alive, TIP].numpy()
        shift = env.physics.qpos[:, oq:oq + 3] - env.start_pos
        dropped = alive & td["terminated"].squeeze(-1).numpy()
        end_step[dropped] = t + 1
        shift_at_end[dropped] = shift[dropped]
        alive &= ~td["done"].squeeze(-1).numpy()
        if not alive.any():
            break
    env.close()
    early = end_step < steps
    along = (shift_at_end * gravity).sum(1)
    lateral = np.linalg.norm(shift_at_end - along[:, None] * gravity, axis=1)
    before = [tips[e - 20, i] for i, e in enumerate(end_step) if e < steps and e >= 20]
    return {"ttf": float((end_step / steps).mean()), "dropped": int(early.sum()), "envs": envs,
            "drop_steps": np.sort(end_step[early]).tolist(),
            "along_gravity_cm": float(100 * along[early].mean()) if early.any() else None,
            "lateral_cm": float(100 * lateral[early].mean()) if early.any() else None,
            "mean_shift_cm": (100 * shift_at_end[early].mean(0)).round(1).tolist() if early.any() else None,
            "tips_on_object_held": float(np.nanmean(tips[:, ~early])) if (~early).any() else None,
            "tips_on_object_dropped": float(np.nanmean(tips[:, early])) if early.any() else None,
            "tips_on_object_20_steps_before_drop": float(np.mean(before)) if before else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--envs", type=int, default=48)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    model, meta = load_oracle(args.checkpoint)
    env_cfg = meta["config"]["env"]
    for name, policy in (("oracle", model.act), ("zero_action", lambda obs: torch.zeros(obs.shape[0], 16))):
        print(name, first_episodes(policy, env_cfg, args.envs, args.seed))


if __name__ == "__main__":
    main()
