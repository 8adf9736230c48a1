"""``dexndm``: one console script, a sub-command per stage.

Each sub-command is a Hydra app (overrides as ``key=value``) or, for benchmarks, a
plain argparse tool.  ``dexndm <command> --help`` shows its options.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "pipeline": ("dexndm.apps.pipeline", "the sim-to-real loop end to end on a target domain, with a report (main job)"),
    "demo": ("dexndm.apps.demo", "roll out the rotation task in MuJoCo and render it"),
    "grasps": ("dexndm.apps.grasps", "build the grasp caches of an object set"),
    "collect": ("dexndm.collect.cli", "collect target-domain transitions: `dexndm collect chaos_box|free_hand|base_waves|task_aware --out F [--hand sim|emulated|leap] ...`"),
    "train": ("dexndm.apps.train", "train a model of the zoo: `dexndm train experiment=jointwise_pretrain ...`"),
    "rollout": ("dexndm.apps.rollout", "roll out PPO oracles; keep full-length trajectories as BC data (HDF5)"),
    "train_oracle": ("dexndm.apps.train_oracle", "train a PPO oracle for one object category (privileged obs)"),
    "domains": ("dexndm.apps.domains", "list the shipped target-domain presets, or show one resolved"),
    "eval": ("dexndm.apps.eval", "evaluate policies (+residual) x domains x objects x axes x wrists over seeds: paper tables"),
    "eval-dynamics": ("dexndm.eval.dynamics", "per-joint one-step and open-loop errors of dynamics checkpoints (md/csv/json/png)"),
    "curves": ("dexndm.eval.curves", "plot a training run's metrics.csv to PNG"),
    "data": ("dexndm.data.cli", "trajectory datasets: `dexndm data info|validate|merge ...`"),
    "export": ("dexndm.apps.export", "export generalist (+ residual) to a deploy bundle (TorchScript + manifest)"),
    "deploy": ("dexndm.apps.deploy", "run a bundle at 20 Hz on a hand: hand=sim | emulated | leap"),
    "bench": ("dexndm.bench.__main__", "benchmarks: `dexndm bench sim|ppo|models|deploy [--json]`"),
}


def _usage() -> str:
    lines = ["usage: dexndm <command> [overrides...]", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"dexndm: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    sys.argv = [f"dexndm {name}", *rest]
    result = module.main()
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
