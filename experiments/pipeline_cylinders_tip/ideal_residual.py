"""What would DexNDM win back with a perfect dynamics model?  And with the learned ones, minus the network?

Runs, in the TARGET domain with ``dexndm eval``'s protocol (same seeds, same draws for every policy):

* ``source``: the generalist in the source domain (what the gap costs);
* ``direct``: the generalist in the target domain;
* ``ideal_B``: the generalist plus the ideal residual of bound B (``dexndm.eval.ideal``): DexNDM's one-step
  objective solved exactly with the simulators at every step (privileged: a ceiling, not a method);
* ``NAME_B`` for each ``--model-inverse NAME=TARGET.ckpt[,SOURCE.ckpt]``: the same one-step inverse solved
  through learned joint-wise dynamics models, at deployment, with no residual network (so no fitting error and
  no train-on-sim-states / deploy-on-target-states shift).  The reference is the source model's prediction, or
  with no source model the source simulator's step; the target's answer is the fine-tuned target model's.
  Histories are the target hand's measured joints and the commands actually sent.
* ``NAME`` for each ``--trained NAME=RESIDUAL.ckpt``: the generalist plus a trained residual, acting as at
  deployment; the simulators only measure, at every visited state, the one-step gap to the sim under a_t and
  under a_t + a_res (the true effect of the residual on the objective it was trained for, on its own states).
* ``NAME`` for each ``--gap-probe NAME=TARGET.ckpt,SOURCE.ckpt``: direct transfer, and at every visited state the
  gap the learned models see, f_src - f_tgt under a_t, against the true one, sim step - target step from the
  target's full state (``one_step_gap_mrad`` the true gap, ``one_step_left_mrad`` the learned gap's error,
  ``gap_corr`` their correlation over joints, envs and steps): is the reference good enough to train through?

    PYTHONPATH=. python experiments/pipeline_cylinders_tip/ideal_residual.py --generalist G \\
        --domain experiments/pipeline_interim/weak_hand.yaml --bounds 0.02 0.1 --out outputs/ideal_weak.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from dexndm.eval.ideal import IdealResidualPolicy, SentHistory, secant_correction
from dexndm.eval.policies import GeneralistPolicy, PolicySpec, parse_policy
from dexndm.eval.rotation import Condition, aggregate, policy_env_requirements, run_episodes
from dexndm.hand import constants as hc
from dexndm.sim import make_env
from replay_tracking import replay_parser


class ModelInverse(SentHistory):
    """The ideal residual's inverse, through learned models (see the module docstring)."""

    def __init__(self, generalist: str, source: str, bound: float, target_model: str, source_model: str | None,
                 iterations: int = 6):
        from dexndm.models.lit_dynamics import load_dynamics

        f_tgt = load_dynamics(target_model)[0]
        super().__init__(PolicySpec("generalist", generalist, ideal=bound, ideal_source=source), f_tgt.window,
                         iterations)
        self.f_tgt = f_tgt
        self.f_src = load_dynamics(source_model)[0] if source_model else None
        if self.f_src is not None and self.f_src.window != self.W:
            raise ValueError(f"source and target models have windows {self.f_src.window} and {self.W}")

    @torch.no_grad()
    def act(self, td, env):
        action, a_np = self.base_step(td, env)
        lo, hi = torch.as_tensor(hc.JOINT_LOWER).float(), torch.as_tensor(hc.JOINT_UPPER).float()
        a_t = torch.as_tensor(a_np).float()
        if self.f_src is not None:
            q_ref = self.predict(self.f_src, a_t).double().numpy()
        else:
            q_ref = self.reference_q(env, a_t.double().numpy())
        def target_model(command: np.ndarray) -> np.ndarray:
            return self.predict(self.f_tgt, torch.as_tensor(command).float()).double().numpy()

        r, gap, left = secant_correction(target_model, q_ref, a_t.double().numpy(), self.bound, self.iterations)
        self.last_sent = torch.minimum(torch.maximum(a_t + torch.as_tensor(r).float(), lo), hi)
        self.record(td, gap, left)
        return action, self.last_sent - a_t


class TrainedResidual(IdealResidualPolicy):
    """A trained residual acting; the simulators measure its one-step gap to the sim before and after."""

    def __init__(self, generalist: str, source: str, residual: str):
        super().__init__(PolicySpec("generalist", generalist, ideal=0.0, ideal_source=source))
        self.trained = GeneralistPolicy(parse_policy(f"generalist:{generalist}+residual:{residual}"))

    @torch.no_grad()
    def act(self, td, env):
        self._sync(env)
        action, offset = self.trained.act(td, env)
        a_t = env.control.chain(action.double().numpy())
        q_ref = self.reference_q(env, a_t)
        with self.target_trials(env) as step:
            gap = np.abs(q_ref - step(a_t)).mean(-1)
            left = np.abs(q_ref - step(a_t + offset.double().numpy())).mean(-1)
        self.record(td, gap, left)
        return action, offset


class GapProbe(ModelInverse):
    """Direct transfer; records how well the learned models' gap f_src - f_tgt matches the true one."""

    def __init__(self, generalist: str, source: str, target_model: str, source_model: str):
        super().__init__(generalist, source, 0.0, target_model, source_model)
        self.sums = np.zeros(6)        # n, sum t, sum l, sum tt, sum ll, sum tl over running envs' joints
        self.model_sq = np.zeros(2)    # squared one-step errors of the source and target models

    @torch.no_grad()
    def act(self, td, env):
        action, a_t = self.base_step(td, env)
        a = torch.as_tensor(a_t).float()
        p_src, p_tgt = (self.predict(model, a).double().numpy() for model in (self.f_src, self.f_tgt))
        learned = p_src - p_tgt
        q_src = self.reference_q(env, a_t)
        with self.target_trials(env) as step:
            q_tgt = step(a_t)
        true = q_src - q_tgt
        self.last_sent = a
        self.record(td, np.abs(true).mean(-1), np.abs(learned - true).mean(-1))
        running = ~self._ended
        t, l_ = true[running].ravel(), learned[running].ravel()
        self.sums += [t.size, t.sum(), l_.sum(), (t * t).sum(), (l_ * l_).sum(), (t * l_).sum()]
        self.model_sq += [((p_src - q_src)[running] ** 2).sum(), ((p_tgt - q_tgt)[running] ** 2).sum()]
        return action, None

    def stats(self) -> dict:
        n, st, sl, stt, sll, stl = self.sums
        cov = stl / n - st / n * sl / n
        corr = cov / np.sqrt(max(stt / n - (st / n) ** 2, 1e-30) * max(sll / n - (sl / n) ** 2, 1e-30))
        return {**super().stats(), "gap_corr": float(corr), "learned_gap_rms_mrad": 1e3 * float(np.sqrt(sll / n)),
                "true_gap_rms_mrad": 1e3 * float(np.sqrt(stt / n)),
                "source_model_rms_mrad": 1e3 * float(np.sqrt(self.model_sq[0] / n)),
                "target_model_rms_mrad": 1e3 * float(np.sqrt(self.model_sq[1] / n))}


def main() -> None:
    p = replay_parser(__doc__.split("\n\n")[0])      # --envs: episodes per seed, one round
    p.add_argument("--bounds", type=float, nargs="+", default=[0.0, 0.02, 0.1])
    p.add_argument("--iterations", type=int, default=4)
    p.add_argument("--model-inverse", action="append", default=[],
                   help="NAME=TARGET_MODEL.ckpt[,SOURCE_MODEL.ckpt]: the inverse through learned joint-wise models "
                        "(no source model: the source simulator is the reference); run at every bound (repeatable)")
    p.add_argument("--no-ideal", action="store_true", help="skip the simulator inverse (run only --model-inverse)")
    p.add_argument("--gap-probe", action="append", default=[],
                   help="NAME=TARGET.ckpt,SOURCE.ckpt: the learned models' gap against the true one (repeatable)")
    p.add_argument("--trained", action="append", default=[],
                   help="NAME=RESIDUAL.ckpt: a trained residual, its true one-step gap measured (repeatable)")
    args = p.parse_args()

    base = GeneralistPolicy(parse_policy(f"generalist:{args.generalist}"))
    env_cfg = {**policy_env_requirements({"g": base}), "max_sag": None, "nthread": 1}

    def build(domain: str):
        cond = Condition(domain, args.object_set, args.axes, args.wrist)
        return make_env(env_cfg, num_envs=args.envs, seed=args.seeds[0], **cond.env_overrides())

    tgt, src = build(args.domain), build(args.source_domain)
    runs = {"source": (base, src), "direct": (base, tgt)}
    for item in args.gap_probe:
        name, _, paths = item.partition("=")
        target_model, _, source_model = paths.partition(",")
        if not (target_model and source_model):
            raise SystemExit(f"--gap-probe takes NAME=TARGET.ckpt,SOURCE.ckpt, got {item!r}")
        runs[name] = (GapProbe(args.generalist, args.source_domain, target_model, source_model), tgt)
    for item in args.trained:
        name, _, path = item.partition("=")
        runs[name] = (TrainedResidual(args.generalist, args.source_domain, path), tgt)
    for bound in args.bounds:
        if not args.no_ideal:
            spec = PolicySpec("generalist", args.generalist, ideal=bound, ideal_source=args.source_domain)
            runs[f"ideal_{bound:g}"] = (IdealResidualPolicy(spec, args.iterations), tgt)
        for item in args.model_inverse:
            name, _, paths = item.partition("=")
            target_model, _, source_model = paths.partition(",")
            if not target_model:
                raise SystemExit(f"--model-inverse takes NAME=TARGET.ckpt[,SOURCE.ckpt], got {item!r}")
            runs[f"{name}_{bound:g}"] = (ModelInverse(args.generalist, args.source_domain, bound, target_model,
                                                      source_model or None), tgt)
    results: dict[str, dict] = {}
    try:
        for name, (policy, env) in runs.items():
            policy.check_env(env)
            start = time.perf_counter()
            row = aggregate({s: run_episodes(policy, env, args.envs, s) for s in args.seeds})
            row["seconds"] = time.perf_counter() - start
            if isinstance(policy, IdealResidualPolicy):
                row.update(policy.stats())
                policy.close()
            results[name] = row
            extra = (f", one-step gap {row['one_step_gap_mrad']:.2f} -> {row['one_step_left_mrad']:.2f} mrad"
                     if "one_step_gap_mrad" in row else "")
            if "gap_corr" in row:
                extra += (f" (learned gap vs true: corr {row['gap_corr']:.2f}, rms {row['learned_gap_rms_mrad']:.2f} "
                          f"vs {row['true_gap_rms_mrad']:.2f} mrad; model errors, source {row['source_model_rms_mrad']:.2f}, "
                          f"target {row['target_model_rms_mrad']:.2f} mrad rms)")
            print(f"{name:>12}: rot {row['mean']['rot_rad']:.3f} +- {row['std']['rot_rad']:.3f} rad, TTF "
                  f"{row['mean']['ttf']:.3f}; per seed rot " +
                  " / ".join(f"{v['rot_rad']:.3f}" for v in row["per_seed"].values()) +
                  f" ({row['seconds']:.0f} s){extra}", flush=True)
    finally:
        src.close()
        tgt.close()
    direct = results["direct"]["per_seed"]
    for name, row in results.items():
        diffs = [row["per_seed"][s]["rot_rad"] - direct[s]["rot_rad"] for s in direct]
        ttf = [row["per_seed"][s]["ttf"] - direct[s]["ttf"] for s in direct]
        row["paired_minus_direct"] = {"rot_rad": diffs, "ttf": ttf}
        print(f"{name:>12} minus direct: rot {np.mean(diffs):+.3f} +- {np.std(diffs):.3f} "
              f"({' / '.join(f'{d:+.2f}' for d in diffs)}), TTF {np.mean(ttf):+.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
