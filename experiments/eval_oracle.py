"""Evaluate an oracle checkpoint against a zero-action policy in its own env (deterministic mean).

    PYTHONPATH=. python experiments/eval_oracle.py CHECKPOINT [--envs 64] [--episodes 64] [--seed 1]
        [--grasp hard_draws] [--env drop_distance=0.05 ...]

Prints episode means of RotR, TTF, RotP and radians rotated for the oracle and for zero action,
over ``--episodes`` episodes: the first episode of each environment, run in batches of ``--envs``
(counting whichever episodes end first would over-weight early drops), and ``rot_by_quarter``: the
mean rotation rate about the axis (rad/s, unclipped) over the objects still held, in
each quarter of the episode (an oracle that twists once and then holds shows a falling rate), and
``shake``: the fraction of held steps turning faster than 1 rad/s either way (the object shaken),
and, by quarter over the held objects, ``drift_by_quarter``: the joint targets' distance from the
episode's first targets (sum of squares, rad^2), and ``at_limit_by_quarter``: the fraction of joint
targets within 0.01 rad of a joint limit (relative actions drift there: a joint at its limit
explores in one direction only), and ``last_quarter_by_joint``: for each joint by name, the mean
target minus the episode's first target (rad) and the fraction of held steps at a limit, over the
last quarter (which fingers end up where).
``--grasp PRESET`` draws start grasps from a ``dexndm/conf/grasp`` preset (``hard_draws``: the grasps the
gait recipe trains from) and ``--env KEY=VALUE`` changes a setting of the oracle's env for both policies (e.g. measure an oracle
trained with a looser drop test under the default one); the value is read as YAML.
"""

from __future__ import annotations

import argparse
import json

import torch

from dexndm.hand import constants as hc
from dexndm.rl.checkpoint import load_oracle
from dexndm.sim import make_env
from dexndm.sim.config import grasp_preset_overrides, with_overrides
from dexndm.sim.metrics import EPISODE_METRICS, summarize

QUARTERS = 4
AT_LIMIT = 0.01  # rad


def evaluate(policy, env_cfg: dict, envs: int, episodes: int, seed: int) -> dict:
    done = {m: [] for m in EPISODE_METRICS}
    rate_sum, rate_count = torch.zeros(QUARTERS), torch.zeros(QUARTERS)
    fast = 0
    drift_sum, limit_sum = torch.zeros(QUARTERS), torch.zeros(QUARTERS)
    joint_offset, joint_at_limit, last_count = torch.zeros(hc.NUM_JOINTS), torch.zeros(hc.NUM_JOINTS), 0
    for batch in range(-(-episodes // envs)):
        env = make_env(env_cfg, num_envs=min(envs, episodes - batch * envs), seed=seed + batch)
        td = env.reset()
        pending = torch.ones(env.batch_size[0], dtype=torch.bool)
        step = 0
        first_targets = env.control.target.copy()
        while pending.any():
            with torch.no_grad():
                td["action"] = policy(td["observation"])
            before = env.tracker.w_dot_k.copy()
            out = env.step(td)
            rate = torch.as_tensor(env.tracker.w_dot_k - before)    # this step's w . k, before any auto-reset
            target = env.control.target                              # also read before any auto-reset
            drift = torch.as_tensor(((target - first_targets) ** 2).sum(-1))
            joint_limited = torch.as_tensor((target - hc.JOINT_LOWER < AT_LIMIT) | (hc.JOINT_UPPER - target < AT_LIMIT))
            at_limit = joint_limited.float().mean(-1)
            td = env.maybe_reset(env.step_mdp(out))
            quarter = min(step * QUARTERS // env.cfg.episode_steps, QUARTERS - 1)
            rate_sum[quarter] += rate[pending].sum()
            rate_count[quarter] += pending.sum()
            fast += int((rate[pending].abs() > 1.0).sum())
            drift_sum[quarter] += drift[pending].sum()
            limit_sum[quarter] += at_limit[pending].sum()
            if quarter == QUARTERS - 1:
                joint_offset += torch.as_tensor(target - first_targets)[pending].sum(0)
                joint_at_limit += joint_limited[pending].float().sum(0)
                last_count += int(pending.sum())
            step += 1
            first = out["next", "episode_ended"].squeeze(-1) & pending
            for k, m in enumerate(EPISODE_METRICS):
                done[m].extend(out["next", "episode_metrics"][first, k].tolist())
            pending &= ~first
        env.close()
    summary = summarize(done)
    result = {k: v["mean"] for k, v in summary.items() if k in ("rot_r", "ttf", "rotp", "rot_rad")}
    result["episodes"] = summary["rot_r"]["n"]
    result["rot_by_quarter"] = (rate_sum / rate_count.clamp(min=1)).tolist()
    result["shake"] = fast / max(float(rate_count.sum()), 1.0)
    result["drift_by_quarter"] = (drift_sum / rate_count.clamp(min=1)).tolist()
    result["at_limit_by_quarter"] = (limit_sum / rate_count.clamp(min=1)).tolist()
    result["last_quarter_by_joint"] = {
        name: {"offset": round(float(joint_offset[j]) / max(last_count, 1), 3),
               "at_limit": round(float(joint_at_limit[j]) / max(last_count, 1), 3)}
        for j, name in enumerate(hc.JOINT_NAMES)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--envs", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--grasp", metavar="PRESET", help="start grasps from dexndm/conf/grasp/PRESET.yaml")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="change an env setting, dotted keys allowed (repeatable)")
    args = parser.parse_args()
    model, meta = load_oracle(args.checkpoint)
    overrides = (grasp_preset_overrides(args.grasp) if args.grasp else []) + args.env   # --env wins
    env_cfg = with_overrides(meta["config"]["env"], overrides)
    result = {
        "oracle": evaluate(model.act, env_cfg, args.envs, args.episodes, args.seed),
        "zero_action": evaluate(lambda obs: torch.zeros(obs.shape[0], 16), env_cfg, args.envs, args.episodes, args.seed),
        "frames": meta["counters"]["frames"],
        "lineage": meta["lineage"],   # frames with the runs it was warm-started from: the budget's count
        "grasp_preset": args.grasp, "env_overrides": overrides,
        "checkpoint": str(args.checkpoint), "seed": args.seed, "episodes": args.episodes, "envs": args.envs,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
