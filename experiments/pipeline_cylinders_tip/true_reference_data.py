"""Target-domain windows labelled with where the SIM hand would go: a privileged reference, for a diagnosis.

Section 9 of ``residual_diagnosis.md`` traces the target-state residual's failure to its reference model, which
misses the sim's step from the target hand's states by the whole gap.  This script supplies the reference a
perfect source model would: the generalist runs in the TARGET domain (``--episodes`` episodes, seeds 2000 + k,
apart from the evaluation's), and at every step of a running episode the source simulator is stepped once from the
target's full physics state under the base command (``dexndm.eval.ideal``'s ``reference_q``).  Each step is written
as a trajectory of the last ``--window`` measured joints and commands, then that sim step as the final state, so that
``dexndm train experiment=residual sim_data=OUT model.history_commands=recorded`` trains the residual through the
fine-tuned target model toward the true sim step, with nothing learned in the reference.

    PYTHONPATH=. python experiments/pipeline_cylinders_tip/true_reference_data.py --generalist G \\
        --domain experiments/pipeline_cylinders_tip/weak_gains_only.yaml --out outputs/true_reference.h5
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from dexndm.data.writer import TrajectoryWriter
from dexndm.eval.policies import PolicySpec
from dexndm.eval.rotation import Condition, policy_env_requirements, run_episodes
from dexndm.sim import make_env
from dexndm.sim.domain import load_domain
from ideal_residual import SentHistory      # this folder: the script's own directory is on sys.path


class ReferenceRecorder(SentHistory):
    """Direct transfer; keeps (q history, command history, sim step) of every running env's steps."""

    def __init__(self, generalist: str, source: str, window: int):
        super().__init__(PolicySpec("generalist", generalist, ideal=0.0, ideal_source=source), window)
        self.rows = []

    @torch.no_grad()
    def act(self, td, env):
        action, a_t = self.base_step(td, env)
        self.last_sent = torch.as_tensor(a_t).float()
        commands = torch.cat((self.ah, self.last_sent[:, None]), 1).numpy()       # a_{t-W+1..t}
        q_ref = self.reference_q(env, a_t)
        if "episode_ended" in td.keys():
            self._ended |= td["episode_ended"].reshape(-1).numpy()
        for i in np.flatnonzero(~self._ended & (env.tracker.steps >= self.W - 1)):   # a full history of its own
            self.rows.append((self.qh[i].numpy().copy(), commands[i].copy(), q_ref[i].copy(), env.gravity_dir[i].copy()))
        return action, None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generalist", required=True)
    p.add_argument("--domain", required=True)
    p.add_argument("--source-domain", default="nominal")
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, default=8, help="rounds of --envs episodes")
    p.add_argument("--envs", type=int, default=32)
    p.add_argument("--window", type=int, default=10)
    args = p.parse_args()

    rec = ReferenceRecorder(args.generalist, args.source_domain, args.window)
    env_cfg = {**policy_env_requirements({"g": rec}), "max_sag": None, "nthread": 1}
    cond = Condition(args.domain, "cylinders", "+z", "palm_up")
    env = make_env(env_cfg, num_envs=args.envs, seed=2000, **cond.env_overrides())
    rec.check_env(env)

    for k in range(args.rounds):
        rec.qh = None
        run_episodes(rec, env, args.envs, 2000 + k)
        print(f"round {k + 1}/{args.rounds}: {len(rec.rows)} steps", flush=True)
    rec.close()
    env.close()
    dom = load_domain(args.domain)
    source = {"kind": "collection", "strategy": "true_reference", "generalist": args.generalist,
              "source_domain": args.source_domain}
    with TrajectoryWriter(args.out, domain=dom.to_dict(), source=source, config=vars(args),
                          control_rate_hz=1.0 / dom.control_dt) as writer:
        for qh, ah, q_ref, gravity in rec.rows:
            writer.append({"q": np.concatenate([qh, q_ref[None]]).astype(np.float32), "target": ah.astype(np.float32),
                           "initial_target": ah[0].astype(np.float32), "axis": np.array([0, 0, 1], np.float32),
                           "gravity_dir": gravity.astype(np.float32), "success": True,
                           "params": {"strategy": "true_reference"}})
    print(f"{len(rec.rows)} windows -> {args.out}")


if __name__ == "__main__":
    main()
