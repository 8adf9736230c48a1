"""``dexndm collect STRATEGY``: collect target-domain transition data (DexNDM Sec. 3.3).

    dexndm collect chaos_box --out F --episodes K --envs N --domain D --source S --wrist W --steps T --seed X
    dexndm collect free_hand  ... (replay without balls)
    dexndm collect base_waves --out F --episodes K ...       (no --source)

An existing ``--out`` file is continued up to ``--episodes`` episodes in total.
"""

from __future__ import annotations

import argparse
import json

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
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    summary = collect(args.strategy, out=args.out, episodes=args.episodes, num_envs=args.envs, domain=args.domain,
                      source_file=args.source, wrist=args.wrist, episode_steps=args.steps, noise_prob=args.noise_prob,
                      noise_std=args.noise_std, seed=args.seed, num_balls=args.balls)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
