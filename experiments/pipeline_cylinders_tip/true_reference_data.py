"""Target-domain windows labelled with where the SIM hand would go: a privileged reference, for a diagnosis.

Section 9 of ``residual_diagnosis.md`` traces the target-state residual's failure to its reference model, which
misses the sim's step from the target hand's states by the whole gap.  This script supplies the reference a
perfect source model would: ``dexndm.collect.sim_reference`` run with the TARGET domain itself (rounds seeded
2000 + k, apart from the evaluation's), so that ``dexndm train experiment=residual sim_data=OUT
model.history_commands=recorded`` trains the residual through the fine-tuned target model toward the true sim step,
with nothing learned in the reference.  With another domain than the target (``--domain actuator_gap``) it makes
the data of the deployable proxy reference, as ``dexndm pipeline residual.reference=proxy`` does.

    PYTHONPATH=. python experiments/pipeline_cylinders_tip/true_reference_data.py --generalist G \\
        --domain experiments/pipeline_cylinders_tip/weak_gains_only.yaml --out outputs/true_reference.h5
"""

from __future__ import annotations

import argparse

from dexndm.collect.sim_reference import collect_sim_reference


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
    summary = collect_sim_reference(out=args.out, generalist=args.generalist, domain=args.domain,
                                    source_domain=args.source_domain, object_set="cylinders", axes="+z",
                                    wrist="palm_up", rounds=args.rounds, num_envs=args.envs, window=args.window,
                                    env={"max_sag": None, "nthread": 1})
    print(f"{summary['windows']} windows -> {args.out}")


if __name__ == "__main__":
    main()
