"""How the target hand answers a change of command in task states, against what dynamics models predict.

A residual trained through a frozen dynamics model f_psi moves the command a by a_res and relies on
f_psi's answer to "what does the joint do if I send a + d instead of a?" (DexNDM Sec. 3.3).  This
script measures that answer in the target domain itself, in the states the residual acts in:

1. the generalist runs closed loop in the source domain (as ``replay_tracking.py``), and its chain
   targets are replayed open loop in the TARGET domain from the same grasps;
2. at step k the replay is repeated with a kick d (+-``--kick`` rad, random sign per env and joint)
   added to the command of that step alone; the true response is dq = q'_{k+1} - q_{k+1};
3. each ``--ckpt`` predicts the same from the unkicked replay's last W states and commands:
   f(q, a + d) - f(q, a).

Reported per model: the slope of predicted on true response (1: the model has the gain right),
their correlation, and the mean true and predicted gain dq / d.

    PYTHONPATH=. python experiments/pipeline_cylinders_tip/action_response.py --generalist G \\
        --domain experiments/pipeline_interim/weak_hand.yaml --ckpt ft_weak=F.ckpt --ckpt pretrained=P.ckpt \\
        --out outputs/action_response_weak.json
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from dexndm.eval.policies import GeneralistPolicy, parse_policy
from dexndm.models.lit_dynamics import load_dynamics
from experiments.pipeline_cylinders_tip.replay_tracking import condition_env, replay, replay_parser, source_run


def main() -> None:
    p = replay_parser(__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", action="append", default=[], help="NAME=dynamics.ckpt (repeatable)")
    p.add_argument("--steps", type=int, nargs="+", default=[12, 20, 30], help="the steps kicked")
    p.add_argument("--kick", type=float, default=0.02, help="rad")
    args = p.parse_args()

    models = {}
    for item in args.ckpt:
        name, _, path = item.partition("=")
        models[name] = load_dynamics(path)[0].eval()
    base = GeneralistPolicy(parse_policy(f"generalist:{args.generalist}"))
    src_env, tgt_env = condition_env(args.source_domain, args), condition_env(args.domain, args)
    rng = np.random.default_rng(0)
    true, pred = [], {m: [] for m in models}
    try:
        for seed in args.seeds:
            src = source_run(base, src_env, seed, max(args.steps) + 1)
            plain = replay(base, tgt_env, seed, src["a"], src["grasp"])
            for k in args.steps:
                d = rng.choice([-args.kick, args.kick], size=src["a"].shape[1:])
                kicked = replay(base, tgt_env, seed, src["a"], src["grasp"], kick=(k, d))
                ok = plain["alive"][k + 1] & kicked["alive"][k + 1]
                sent_k = plain["sent"][k]
                moved = np.abs(kicked["sent"][k] - sent_k - d) < 1e-6             # not clamped at a joint limit
                dq = kicked["q"][k + 1] - plain["q"][k + 1]
                for name, model in models.items():
                    W = model.window
                    qh = torch.as_tensor(plain["q"][k - W + 1:k + 1].transpose(1, 0, 2), dtype=torch.float32)
                    ah = torch.as_tensor(plain["sent"][k - W + 1:k + 1].transpose(1, 0, 2), dtype=torch.float32)
                    ak = ah.clone()
                    ak[:, -1] += torch.as_tensor(d, dtype=torch.float32)
                    with torch.no_grad():
                        dm = (model(qh, ak) - model(qh, ah)).numpy()
                    pred[name].append((dm / d)[ok][moved[ok]])
                true.append((dq / d)[ok][moved[ok]])
            print(f"seed {seed}: true gain {np.mean(np.concatenate(true)):.3f}")
    finally:
        src_env.close()
        tgt_env.close()
    t = np.concatenate(true)
    out = {"args": vars(args), "samples": int(t.size), "true_gain_mean": float(t.mean()), "models": {}}
    for name in models:
        m = np.concatenate(pred[name])
        out["models"][name] = {"gain_mean": float(m.mean()), "slope_on_true": float((m * t).sum() / (t * t).sum()),
                               "corr": float(np.corrcoef(m, t)[0, 1]),
                               "mean_abs_gain_error": float(np.abs(m - t).mean())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"true gain dq/d: mean {out['true_gain_mean']:.3f} over {t.size} joint kicks")
    for name, r in out["models"].items():
        print(f"{name:>14}: predicted gain {r['gain_mean']:.3f}, slope on true {r['slope_on_true']:.3f}, "
              f"corr {r['corr']:.3f}, mean |gain error| {r['mean_abs_gain_error']:.3f}")


if __name__ == "__main__":
    main()
