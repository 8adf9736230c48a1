"""Can a deployable residual network do what the ideal residual does?  Distil it, then evaluate.

``dexndm.eval.ideal`` computes, from both simulators, the residual a perfect dynamics model would give.  It is
privileged: it reads the full physics state.  This script asks whether the residual network of the pipeline,
which sees only the target hand's measured joints and the base command (q_t, a_t and ``--history`` - 1 steps
before, as ``ResidualNet``), can represent it:

1. the generalist plus the ideal residual (``--bound``) runs in the TARGET domain for ``--rounds`` rounds of
   ``--envs`` episodes (seeds 1000 + k, apart from the evaluation seeds); every step of a running episode is
   kept: the deploy observation, the chain target a_t and the ideal residual r*;
2. a ``ResidualNet`` (max_residual = bound) is fitted to r* by mean squared error (10% of episodes held out);
3. the generalist plus that network is evaluated beside direct transfer with ``dexndm eval``'s protocol.

If the distilled network wins back what the ideal one does, the deployable inputs suffice and the pipeline's
shortfall is the dynamics model's; if not, a residual of this form cannot do it whatever the model.

    PYTHONPATH=. python experiments/pipeline_cylinders_tip/distill_ideal.py --generalist G \\
        --domain experiments/pipeline_interim/weak_hand.yaml --bound 0.1 --out outputs/distill_weak.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dexndm.eval.ideal import IdealResidualPolicy
from dexndm.eval.policies import GeneralistPolicy, PolicySpec, parse_policy
from dexndm.eval.rotation import Condition, aggregate, policy_env_requirements, run_episodes
from dexndm.models.deploy_policy import DeployPolicy
from dexndm.models.residual import ResidualNet
from dexndm.sim import make_env


class RecordingIdeal(IdealResidualPolicy):
    """``IdealResidualPolicy`` that keeps (deploy obs, a_t, r*) of every step whose episode still runs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows: list[tuple[np.ndarray, ...]] = []
        self.round = 0                      # set by the caller: rows are tagged round * N + env index

    def act(self, td, env):
        action, offset = super().act(td, env)
        alive = ~self._ended
        self.rows.append((td["policy_obs"].numpy()[alive].copy(), self.last_chain[alive].astype(np.float32),
                          offset.numpy()[alive].copy(), self.round * len(alive) + np.flatnonzero(alive)))
        return action, offset


def fit(policy: DeployPolicy, q: torch.Tensor, obs: torch.Tensor, a: torch.Tensor, r: torch.Tensor, epochs: int,
        seed: int, episode_id: np.ndarray) -> dict[str, float]:
    """Fit ``policy.residual`` to r ``[S, 16]`` from (q_t, a_t, the steps before read from ``obs``) by MSE on 90%
    of the episodes; returns train and held-out RMSE (rad) and the held-out R^2."""
    torch.manual_seed(seed)
    net = policy.residual
    net.set_stats({"q_mean": q.mean(0), "q_std": q.std(0), "a_mean": a.mean(0), "a_std": a.std(0)})
    rng = np.random.default_rng(seed)
    held = np.isin(episode_id, rng.choice(np.unique(episode_id), max(1, len(np.unique(episode_id)) // 10),
                                          replace=False))
    tr, te = torch.as_tensor(~held), torch.as_tensor(held)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    past = policy.past(obs)
    idx = torch.nonzero(tr).squeeze(1)
    for epoch in range(epochs):
        perm = idx[torch.randperm(len(idx))]
        for b in perm.split(1024):
            loss = ((net(q[b], a[b], None, None if past is None else past[b]) - r[b]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = net(q, a, None, past)
        rmse = lambda m: float(((pred[m] - r[m]) ** 2).mean().sqrt())  # noqa: E731
        base = lambda m: float((r[m] ** 2).mean().sqrt())               # noqa: E731
    return {"train_rmse": rmse(tr), "heldout_rmse": rmse(te), "heldout_rms_target": base(te),
            "heldout_r2": 1.0 - (rmse(te) / base(te)) ** 2}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generalist", required=True)
    p.add_argument("--domain", required=True)
    p.add_argument("--source-domain", default="nominal")
    p.add_argument("--bound", type=float, default=0.1)
    p.add_argument("--histories", type=int, nargs="+", default=[1, 3], help="one student per residual history")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--envs", type=int, default=32)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.manual_seed(0)                                # the students' initial weights

    base = GeneralistPolicy(parse_policy(f"generalist:{args.generalist}"))
    env_cfg = {**policy_env_requirements({"g": base}), "max_sag": None, "nthread": 1}

    def build(domain: str):
        cond = Condition(domain, "cylinders", "+z", "palm_up")
        return make_env(env_cfg, num_envs=args.envs, seed=0, **cond.env_overrides())

    tgt = build(args.domain)
    teacher = RecordingIdeal(PolicySpec("generalist", args.generalist, ideal=args.bound,
                                        ideal_source=args.source_domain))
    try:
        teacher.check_env(tgt)
        start = time.perf_counter()
        for k in range(args.rounds):
            teacher.round = k
            run_episodes(teacher, tgt, args.envs, 1000 + k)
        teacher.close()
        collect_s = time.perf_counter() - start
        obs = torch.as_tensor(np.concatenate([row[0] for row in teacher.rows]))
        a = torch.as_tensor(np.concatenate([row[1] for row in teacher.rows]))
        r = torch.as_tensor(np.concatenate([row[2] for row in teacher.rows]))
        episode_id = np.concatenate([row[3] for row in teacher.rows])
        print(f"collected {len(r)} steps in {collect_s:.0f} s; |r*| mean {float(r.abs().mean()) * 1e3:.1f} mrad, "
              f"at the bound {float((r.abs() > 0.98 * args.bound).float().mean()):.0%}", flush=True)

        policies, fit_stats = {"direct": base}, {}
        for h in args.histories:
            student = GeneralistPolicy(parse_policy(f"generalist:{args.generalist}"))
            net = ResidualNet(hidden=256, depth=2, max_residual=args.bound, history=h)
            student.policy = DeployPolicy(student.policy.base, net, student.policy.action_scale)
            fit_stats[f"history_{h}"] = fit(student.policy, GeneralistPolicy.last_q(obs, tgt), obs, a, r, args.epochs,
                                            0, episode_id)
            print(f"fit, history {h}: " + ", ".join(f"{k} {v:.4f}" for k, v in fit_stats[f"history_{h}"].items()),
                  flush=True)
            student.policy.eval()
            policies[f"distilled_h{h}"] = student

        results = {}
        for name, pol in policies.items():
            per_seed = {s: run_episodes(pol, tgt, args.envs, s) for s in args.seeds}
            results[name] = aggregate(per_seed)
            print(f"{name:>14}: rot {results[name]['mean']['rot_rad']:.3f} rad, TTF {results[name]['mean']['ttf']:.3f}",
                  flush=True)
    finally:
        teacher.close()
        tgt.close()
    paired, d = {}, results["direct"]["per_seed"]
    for name, row in results.items():
        diffs = [row["per_seed"][k]["rot_rad"] - d[k]["rot_rad"] for k in d]
        ttf = [row["per_seed"][k]["ttf"] - d[k]["ttf"] for k in d]
        paired[name] = {"rot_rad": diffs, "ttf": ttf}
        print(f"{name:>14} minus direct: rot {np.mean(diffs):+.3f} +- {np.std(diffs):.3f} "
              f"({' / '.join(f'{x:+.2f}' for x in diffs)}), TTF {np.mean(ttf):+.3f}")
    out = {"args": vars(args), "steps": int(len(r)), "collect_seconds": collect_s, "fit": fit_stats,
           "results": results, "paired_minus_direct": paired}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
