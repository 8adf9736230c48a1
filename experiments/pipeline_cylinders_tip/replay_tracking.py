"""Does the residual make the target hand track the simulated one, in the target domain itself?

The residual is trained so that, through the fine-tuned dynamics model, the target hand follows the
joint trajectory the base policy produces in sim (DexNDM Sec. 3.3).  This script measures that
tracking in the target simulator, where the pipeline's task metrics cannot:

1. per seed, the generalist runs closed loop in the SOURCE domain for ``--steps`` steps from the
   evaluation's first round (same seeding as ``dexndm eval``): its chain targets a_t and measured
   joints q_t are kept;
2. the TARGET domain env is reset with the same seed (same objects and draws) and started from the
   source's grasp (joints, targets and object pose: grasps are settled per domain, so the target's
   own would start elsewhere), and the sim's a_t are replayed open loop, with no residual and with each ``--residual`` (command
   a_t + pi_res(q_t, a_t), q_t the target hand's own measured joints, exactly as at deployment);
3. the report is the mean |q_target - q_sim| over joints and envs at each step (envs whose episode
   ended in either domain drop out), plus a replay in the source domain itself (the floor: what
   reseeding alone reproduces).

    PYTHONPATH=. python experiments/pipeline_cylinders_tip/replay_tracking.py --generalist G \\
        --domain experiments/pipeline_interim/weak_hand.yaml --residual one_step=R1.ckpt --residual h8=R8.ckpt \\
        --out outputs/replay_weak.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from dexndm.eval.policies import GeneralistPolicy, parse_policy
from dexndm.eval.rotation import Condition, round_seed
from dexndm.sim import make_env


def condition_env(domain: str, args: argparse.Namespace):
    cond = Condition(domain, args.object_set, args.axes, args.wrist)
    return make_env({"pose_action_range": None, "max_sag": None, "nthread": 1, "episode_steps": 400},
                    num_envs=args.envs, seed=0, **cond.env_overrides())


def saturated(env) -> np.ndarray:
    """Per env, the fraction of joints whose PD torque kp (target - q) - kd qdot sits at the torque limit now."""
    hand, dom = env.sampler.hand, env.domain
    q, qd = env.physics.qpos[:, hand.motor_qpos], env.physics.qvel[:, hand.motor_dof]
    tau = dom.kp * (env.control.applied - q) - dom.kd * qd
    return (np.abs(tau) >= 0.98 * dom.torque_limit).mean(-1)


class _GraspOverride:
    """Wraps ``env.sampler.sample``: records the grasps drawn, or replaces them with given ones."""

    def __init__(self, env, grasp: np.ndarray | None = None):
        self.sampler, self.grasp, self.drawn = env.sampler, grasp, None
        self.sample = env.sampler.sample

    def __enter__(self) -> "_GraspOverride":
        def sample(*a, **k):
            episode = self.sample(*a, **k)
            if self.grasp is not None:
                episode.grasp = self.grasp.copy()
            self.drawn = episode.grasp.copy()
            return episode
        self.sampler.sample = sample
        return self

    def __exit__(self, *exc) -> None:
        self.sampler.sample = self.sample


def source_run(policy: GeneralistPolicy, env, seed: int, steps: int) -> dict[str, np.ndarray]:
    """Closed-loop base policy: chain targets a ``[T, N, 16]``, measured q ``[T + 1, N, 16]``, alive ``[T + 1, N]``,
    the grasps it started from ``[N, 39]``."""
    env.set_seed(round_seed(seed, 0), static_seed=True)
    with _GraspOverride(env) as grasps:
        td = env.reset()
    q, a, alive = [policy.last_q(td["policy_obs"], env)], [], [np.ones(env.batch_size[0], bool)]
    sat = []
    for _ in range(steps):
        with torch.no_grad():
            td = policy.step_input(td, env)
        td = env.step(td)["next"]
        sat.append(saturated(env))
        a.append(torch.as_tensor(env.control.target, dtype=torch.float32).clone())
        q.append(policy.last_q(td["policy_obs"], env))
        alive.append(alive[-1] & ~td["episode_ended"].reshape(-1).numpy())
    return {"a": torch.stack(a).numpy(), "q": torch.stack(q).numpy(), "alive": np.stack(alive),
            "saturated": np.stack(sat), "grasp": grasps.drawn}


def replay(policy: GeneralistPolicy, env, seed: int, a_sim: np.ndarray, grasp: np.ndarray,
           kick: tuple[int, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Open-loop replay of ``a_sim`` from ``grasp`` through the env's relative-action chain (+ the policy's residual);
    ``kick`` (step k, offset ``[N, 16]``) adds an offset to what is sent at step k alone.  Also returns what was
    sent ``[T, N, 16]``."""
    env.set_seed(round_seed(seed, 0), static_seed=True)
    with _GraspOverride(env, grasp):
        td = env.reset()
    scale = env.cfg.action_scale
    q, alive = [policy.last_q(td["policy_obs"], env)], [np.ones(env.batch_size[0], bool)]
    sat, sent = [], []
    for t in range(len(a_sim)):
        target = torch.as_tensor(a_sim[t], dtype=torch.float32)
        prev = torch.as_tensor(env.control.target, dtype=torch.float32)
        td["action"] = ((target - prev) / scale).clamp(-1.0, 1.0)
        if policy.has_residual:
            td["target_offset"] = policy.policy.offset(td["policy_obs"], policy.last_q(td["policy_obs"], env), target)
        if kick is not None and t == kick[0]:
            td["target_offset"] = td.get("target_offset", torch.zeros_like(target)) + torch.as_tensor(
                kick[1], dtype=torch.float32)
        td = env.step(td)["next"]
        sent.append(env.control.sent.copy())
        sat.append(saturated(env))
        q.append(policy.last_q(td["policy_obs"], env))
        alive.append(alive[-1] & ~td["episode_ended"].reshape(-1).numpy())
    return {"q": torch.stack(q).numpy(), "alive": np.stack(alive), "saturated": np.stack(sat),
            "sent": np.stack(sent)}


def tracking_error(src: dict, rep: dict) -> list[float]:
    """Mean |q_rep - q_src| (rad) per step 1..T over the envs alive in both."""
    both = src["alive"] & rep["alive"]
    err = np.abs(rep["q"] - src["q"]).mean(-1)                         # [T + 1, N]
    return [float(err[t][both[t]].mean()) if both[t].any() else float("nan") for t in range(1, len(err))]


def saturated_fraction(run: dict) -> float:
    """Fraction of joint-steps at the torque limit, over the envs still alive."""
    alive = run["alive"][1:]
    return float(run["saturated"][alive].mean())


def replay_parser(description: str) -> argparse.ArgumentParser:
    """The options every source-run-and-replay script shares (this one and ``action_response.py``)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--generalist", required=True)
    p.add_argument("--domain", required=True, help="target domain (preset name or file)")
    p.add_argument("--source-domain", default="nominal")
    p.add_argument("--object-set", default="cylinders")
    p.add_argument("--axes", default="+z")
    p.add_argument("--wrist", default="palm_up")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--envs", type=int, default=32)
    p.add_argument("--out", required=True)
    return p


def main() -> None:
    p = replay_parser(__doc__.split("\n\n")[0])
    p.add_argument("--residual", action="append", default=[], help="NAME=residual.ckpt (repeatable)")
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args()

    base = GeneralistPolicy(parse_policy(f"generalist:{args.generalist}"))
    methods = {"direct": base}
    for item in args.residual:
        name, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"--residual takes NAME=PATH, got {item!r}")
        methods[name] = GeneralistPolicy(parse_policy(f"generalist:{args.generalist}+residual:{path}"))
    src_env, tgt_env = condition_env(args.source_domain, args), condition_env(args.domain, args)
    per_seed: dict[str, list[list[float]]] = {"source_replay": [], **{m: [] for m in methods}}
    sat: dict[str, list[float]] = {"source": [], **{m: [] for m in methods}}
    try:
        for seed in args.seeds:
            src = source_run(base, src_env, seed, args.steps)
            sat["source"].append(saturated_fraction(src))
            per_seed["source_replay"].append(tracking_error(src, replay(base, src_env, seed, src["a"], src["grasp"])))
            for name, pol in methods.items():
                rep = replay(pol, tgt_env, seed, src["a"], src["grasp"])
                per_seed[name].append(tracking_error(src, rep))
                sat[name].append(saturated_fraction(rep))
                print(f"seed {seed} {name}: step 1 {per_seed[name][-1][0] * 1e3:.2f} mrad, step {args.steps} "
                      f"{per_seed[name][-1][-1] * 1e3:.2f} mrad, mean {np.nanmean(per_seed[name][-1]) * 1e3:.2f}")
    finally:
        src_env.close()
        tgt_env.close()
    summary = {name: {"mean_mrad": float(np.nanmean(v) * 1e3), "per_seed_mean_mrad": [float(np.nanmean(s) * 1e3) for s in v],
                      "by_step_mrad": (np.nanmean(np.asarray(v), 0) * 1e3).tolist()} for name, v in per_seed.items()}
    out = {"args": vars(args), "summary": summary,
           "torque_saturated_fraction": {k: float(np.mean(v)) for k, v in sat.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    for name, s in summary.items():
        steps = s["by_step_mrad"]
        print(f"{name:>14}: mean {s['mean_mrad']:.2f} mrad (seeds {', '.join(f'{x:.2f}' for x in s['per_seed_mean_mrad'])}); "
              f"step 1/5/10/{len(steps)}: {steps[0]:.2f} / {steps[min(4, len(steps) - 1)]:.2f} / "
              f"{steps[min(9, len(steps) - 1)]:.2f} / {steps[-1]:.2f}")
    print("joint-steps at the torque limit: " + ", ".join(f"{k} {v:.1%}" for k, v in out["torque_saturated_fraction"].items()))


if __name__ == "__main__":
    main()
