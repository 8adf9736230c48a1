"""``dexndm collect STRATEGY``: collect target-domain transition data (DexNDM Sec. 3.3).

    dexndm collect chaos_box --out F --episodes K --envs N --domain D --source S --wrist W --steps T --seed X
    dexndm collect free_hand  ... (replay without balls)
    dexndm collect base_waves --out F --episodes K ...       (no --source)
    dexndm collect task_aware --out F --episodes K --policy 'generalist:g.ckpt+residual:r.ckpt'
        --domain D --object-set cylinders --axes z --wrist palm_down [--object-pose]
        (one command line: the policy rotating objects in the target domain; successful episodes only)

An existing ``--out`` file is continued up to ``--episodes`` episodes in total.
"""

from __future__ import annotations

import argparse
import json
import sys

from dexndm.collect.strategies import STRATEGIES, collect


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dexndm collect", description="collect target-domain transition data")
    p.add_argument("strategy", choices=STRATEGIES)
    p.add_argument("--out", required=True, help="HDF5 trajectory file (created or continued)")
    p.add_argument("--episodes", type=int, required=True, help="episodes the file should hold in total")
    p.add_argument("--envs", type=int, default=16, help="parallel environments")
    p.add_argument("--domain", default="nominal", help="target-domain preset name or YAML path")
    p.add_argument("--source", default=None, help="sim rollout file whose targets are replayed (replay strategies)")
    p.add_argument("--wrist", default="palm_down", help="wrist orientation name")
    p.add_argument("--steps", type=int, default=400, help="control steps per episode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--balls", type=int, default=60, help="balls in the Chaos Box (chaos_box only)")
    p.add_argument("--noise-prob", type=float, default=0.5, help="probability an episode gets target noise")
    p.add_argument("--noise-std", type=float, default=0.01, help="sigma of the target noise (rad)")
    t = p.add_argument_group("task_aware")
    t.add_argument("--policy", default=None, help="policy spec: 'generalist:G.ckpt[+residual:R.ckpt]', 'oracle:P.pt'")
    t.add_argument("--object-set", default="cylinders", help="object set the policy rotates")
    t.add_argument("--axes", default="z", help="rotation axes: x | y | z | general | all | +z ...")
    t.add_argument("--object-pose", action="store_true", help="also record the object pose [T+1, 7]")
    t.add_argument("--grasp-dir", default=None, help="grasp cache directory (default: the env's)")
    t.add_argument("--max-attempts", type=int, default=None, help="give up after this many episodes tried")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    progress = False if args.quiet else "auto"
    if args.strategy == "task_aware":
        env = {"grasp_dir": args.grasp_dir} if args.grasp_dir else {}
        task = dict(policy=args.policy, object_set=args.object_set, axes=args.axes, object_pose=args.object_pose,
                    env=env, max_attempts=args.max_attempts)
    else:
        task = {}
    try:
        summary = collect(args.strategy, out=args.out, episodes=args.episodes, num_envs=args.envs, domain=args.domain,
                          source_file=args.source, wrist=args.wrist, episode_steps=args.steps,
                          noise_prob=args.noise_prob, noise_std=args.noise_std, seed=args.seed, num_balls=args.balls,
                          progress=progress, **task)
    except (FileNotFoundError, ValueError) as exc:
        print(f"dexndm collect: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
