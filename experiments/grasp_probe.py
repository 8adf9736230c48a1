"""Probe how forgiving an env's start grasps are: can a finger be lifted, does random exploration drop the object?

    PYTHONPATH=. python experiments/grasp_probe.py CHECKPOINT [--env KEY=VALUE ...] [--envs 64] [--lift-steps 12]

Uses the env of an oracle checkpoint (its task, wrist, axis, domain, grasps), changed by ``--env`` (dotted keys,
YAML values: ``--env grasp.allow_palm_contact=true --env "grasp.palm_blend=[0.8,1.0]"``).  Prints JSON:

- ``lift_held``: per finger, the fraction of episodes still running after its flexion joints open at full
  relative action for ``--lift-steps`` steps (lift-steps/24 rad), close back as far, and then hold for 40 steps;
  ``none`` is zero action for as long.  A finger gait lifts fingers: where lifting the thumb drops the object,
  PPO must find a gait without ever lifting it.
- ``random``: 200 steps of random actions (standard normal, clipped): the fraction still held and the mean
  absolute radians rotated about the axis by those held (how far exploration moves the object).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from dexndm.hand.constants import FINGER_JOINTS, FINGER_NAMES, FLEXION_MASK
from dexndm.rl.checkpoint import load_oracle
from dexndm.sim import make_env
from dexndm.sim.config import with_overrides

RANDOM_STEPS = 200
HOLD_STEPS = 40


def run(env_cfg: dict, envs: int, seed: int, actions) -> tuple[np.ndarray, np.ndarray]:
    """Roll ``actions(t) -> [envs, 16]`` until it returns None; (held [envs] bool, radians about the axis [envs])."""
    env = make_env(env_cfg, num_envs=envs, seed=seed)
    try:
        td = env.reset()
        held = torch.ones(envs, dtype=torch.bool)
        t = 0
        while (action := actions(t)) is not None:
            td["action"] = action
            out = env.step(td)
            held &= ~out["next", "done"].squeeze(-1)
            td = env.step_mdp(out)      # no auto-reset: a finished episode stays finished
            t += 1
        return held.numpy(), env.tracker.w_dot_k * env.dt
    finally:
        env.close()


def lift(finger: int | None, envs: int, k: int):
    joints = [] if finger is None else [j for j in FINGER_JOINTS[finger] if FLEXION_MASK[j] > 0]

    def actions(t: int):
        if t >= 2 * k + HOLD_STEPS:
            return None
        a = torch.zeros(envs, 16)
        a[:, joints] = -1.0 if t < k else (1.0 if t < 2 * k else 0.0)
        return a
    return actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--envs", type=int, default=64)
    parser.add_argument("--lift-steps", type=int, default=12)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    _, meta = load_oracle(args.checkpoint)
    env_cfg = with_overrides(meta["config"]["env"], args.env)

    result = {"lift_held": {}, "env_overrides": args.env}
    for finger, name in [(None, "none")] + list(enumerate(FINGER_NAMES)):
        held, _ = run(env_cfg, args.envs, args.seed, lift(finger, args.envs, args.lift_steps))
        result["lift_held"][name] = float(held.mean())
    noise = torch.Generator().manual_seed(args.seed)
    held, rotated = run(env_cfg, args.envs, args.seed + 1,
                        lambda t: torch.randn(args.envs, 16, generator=noise).clamp(-1, 1) if t < RANDOM_STEPS else None)
    result["random"] = {"held": float(held.mean()),
                        "abs_rad_held": float(np.abs(rotated[held]).mean()) if held.any() else None}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
