"""Can open-loop finger paddling turn a palm-resting cuboid?  A physics check, no learning.

    PYTHONPATH=. python experiments/paddle_probe.py [--envs 32] [--steps 200]

Each pattern moves the index, middle and ring fingers' abduction joints (``*_rot``) by ``A_r sin(w t + k lag)``
and their MCP flexion by ``A_m cos(w t + k lag)`` around the start grasp (finger k = 0, 1, 2), optionally the
thumb's first two joints in antiphase: each fingertip draws an ellipse that pushes the object one way while
pressed and returns while lifted.  Targets follow the pattern through the env's relative actions (a/24 rad per
step, so A w <= 0.83 rad/s).  Cuboids, palm up, +z, ``grasp=palm_rest``; prints per pattern the fraction of
episodes still held after ``--steps`` steps, the mean radians turned about +z by those held, and by all.

What it showed (2026-12-03, 32 envs x 200 steps = 10 s): zero action -0.01 rad; the best of 64 patterns turned
the held objects 0.36-0.41 rad in 10 s (0.04 rad/s, held 0.72-0.84); the direction follows the sign of w, so
the fingers do push the object, but weakly.  Object friction fixed at 0.3-0.5, 1.0 or 2.5-3.0 changed the best
patterns' turn by less than its spread across patterns.  The trained oracles' single twist turns the object
~1.2 rad in its first 5 s: slow open-loop paddling is no shortcut to a gait here.
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import torch

from dexndm.sim import make_env

ENV = dict(object_set="cuboids", wrist="palm_up", axes="+z", max_sag=None, nthread=1,
           grasp={"palm_blend": [0.8, 1.0], "allow_palm_contact": True, "min_tip_contacts": 2, "squeeze": [0.0, 0.1]})
FINGERS = (0, 1, 2)          # index, middle, ring (hardware order: joint 4k is *_rot, 4k+1 is *_mcp)
THUMB_CMC, THUMB_AXL = 12, 13


def paddle(env_cfg: dict, envs: int, steps: int, A_r: float, A_m: float, omega: float, lag: float,
           thumb: float = 0.0, seed: int = 3) -> dict[str, float]:
    """Run one pattern; held fraction, radians about the axis (held episodes, all episodes), and
    ``target_lag_rad``: the largest distance of the joint targets from the pattern over the second half
    of the steps (0 while A w stays under the relative actions' 0.83 rad/s and the limits allow it)."""
    env = make_env(env_cfg, num_envs=envs, seed=seed)
    try:
        td = env.reset()
        base = env.control.target.copy()
        held = np.ones(envs, bool)
        lag_rad = 0.0
        for t in range(steps):
            phase = omega * t * env.dt
            offset = np.zeros(16)
            for k in FINGERS:
                offset[4 * k] = A_r * np.sin(phase + k * lag)
                offset[4 * k + 1] = A_m * np.cos(phase + k * lag)
            offset[THUMB_AXL] = thumb * np.sin(phase + np.pi)
            offset[THUMB_CMC] = thumb * np.cos(phase + np.pi)
            action = np.clip(24.0 * (base + offset - env.control.target), -1.0, 1.0)
            td["action"] = torch.as_tensor(action, dtype=torch.float32)
            out = env.step(td)
            held &= ~out["next", "done"].squeeze(-1).numpy()
            td = env.step_mdp(out)           # no auto-reset: a finished episode stays finished
            if t >= steps // 2:
                lag_rad = max(lag_rad, float(np.abs(env.control.target - (base + offset)).max()))
        turned = env.tracker.w_dot_k * env.dt
        return {"held": float(held.mean()), "rad_held": float(turned[held].mean()) if held.any() else float("nan"),
                "rad_all": float(turned.mean()), "target_lag_rad": lag_rad}
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    rows = [{"pattern": "zero", **paddle(ENV, args.envs, args.steps, 0.0, 0.0, 1.0, 0.0)}]
    for (A_r, omega), A_m, lag, thumb in itertools.product(
            [(0.3, 2.5), (0.3, -2.5), (0.5, 1.6), (0.5, -1.6)], [0.1, 0.25],
            [0.0, 2 * np.pi / 3, -2 * np.pi / 3, np.pi], [0.0, 0.3]):
        r = paddle(ENV, args.envs, args.steps, A_r, A_m, omega, lag, thumb)
        rows.append({"A_r": A_r, "omega": omega, "A_m": A_m, "lag": round(lag, 3), "thumb": thumb, **r})
        print(json.dumps(rows[-1]), flush=True)
    best = sorted(rows[1:], key=lambda r: -abs(r["rad_held"]) * r["held"])[:8]
    print(json.dumps({"zero": rows[0], "best": best}, indent=1))


if __name__ == "__main__":
    main()
