"""``dexndm collect STRATEGY``: collect target-domain transition data (DexNDM Sec. 3.3).

    dexndm collect chaos_box --out F --episodes K --envs N --domain D --source S --wrist W --steps T --seed X
    dexndm collect free_hand  ... (replay without balls)
    dexndm collect base_waves --out F --episodes K ...       (no --source)
    dexndm collect task_aware --out F --episodes K --policy 'generalist:g.ckpt+residual:r.ckpt'
        --domain D --object-set cylinders --axes z --wrist palm_down [--object-pose]
        (one command line: the policy rotating objects in the target domain; successful episodes only)

One hand instead of the batched simulator (``dexndm.collect.hardware``; same sequences,
same file schema, deploy's safety; 20 Hz in real time on a real hand)::

    dexndm collect chaos_box --hand leap --port /dev/ttyUSB0 --source S --wrist W --out F --episodes K
    dexndm collect base_waves --hand emulated --out F --episodes K     (the real Dynamixel stack, no hardware)

On a real hand the Chaos Box is a physical box: ``--hand`` never simulates balls.
An existing ``--out`` file is continued up to ``--episodes`` episodes in total.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dexndm.collect.strategies import STRATEGIES, collect

#: Exit status per stop reason of a hand collection.
EXIT = {"done": 0, "sigint": 130, "bus_errors": 1, "hardware_error": 1}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dexndm collect", description="collect target-domain transition data")
    p.add_argument("strategy", choices=STRATEGIES)
    p.add_argument("--out", required=True, help="HDF5 trajectory file (created or continued)")
    p.add_argument("--episodes", type=int, required=True, help="episodes the file should hold in total")
    p.add_argument("--envs", type=int, default=16, help="parallel environments (batched simulator)")
    p.add_argument("--domain", default=None, help="target-domain preset name or YAML path (default nominal; "
                                                  "simulated hands only)")
    p.add_argument("--source", default=None, help="sim rollout file whose targets are replayed (replay strategies)")
    p.add_argument("--wrist", default="palm_down", help="wrist orientation name (on a real hand: how it is mounted)")
    p.add_argument("--steps", type=int, default=400, help="control steps per episode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--balls", type=int, default=None, help="balls in the simulated Chaos Box (chaos_box, batched "
                                                            "simulator only; default 60)")
    p.add_argument("--noise-prob", type=float, default=0.5, help="probability an episode gets target noise")
    p.add_argument("--noise-std", type=float, default=0.01, help="sigma of the target noise (rad)")
    h = p.add_argument_group(
        "one hand (chaos_box, free_hand, base_waves)",
        "drive ONE hand through the hand interface instead of the batched simulator. No balls are simulated: "
        "on a real hand the Chaos Box is a physical box around it. Targets are clamped to the joint limits and "
        "to --max-step per tick, each episode starts with a ramp to its initial target; Ctrl-C discards the "
        "episode in progress and stops; bus/hardware errors stop naming the motor.")
    h.add_argument("--hand", choices=("sim", "emulated", "leap"), default=None,
                   help="sim: a MuJoCo target domain (keeps its grasped object); emulated: the real dynamixel_sdk "
                        "over a pty emulator; leap: a LEAP hand on a U2D2")
    h.add_argument("--hand-config", default=None, help="hand YAML (like dexndm/conf/hand/leap.yaml: gains, "
                                                       "current limit, ...); the options below override it")
    h.add_argument("--port", default=None, help="serial port of the LEAP hand (default /dev/ttyUSB0)")
    h.add_argument("--baudrate", type=int, default=None, help="bus baud rate (default 4000000)")
    h.add_argument("--max-step", type=float, default=None, help="largest target change per tick, rad (default 0.25)")
    h.add_argument("--settle-ticks", type=int, default=10, help="ticks holding the initial target before an episode")
    h.add_argument("--max-bus-errors", type=int, default=3, help="consecutive failed bus transactions that stop")
    t = p.add_argument_group("task_aware")
    t.add_argument("--policy", default=None, help="policy spec: 'generalist:G.ckpt[+residual:R.ckpt]', 'oracle:P.pt'")
    t.add_argument("--object-set", default="cylinders", help="object set the policy rotates")
    t.add_argument("--axes", default="z", help="rotation axes: x | y | z | general | all | +z ...")
    t.add_argument("--object-pose", action="store_true", help="also record the object pose [T+1, 7]")
    t.add_argument("--grasp-dir", default=None, help="grasp cache directory (task_aware, --hand sim|emulated)")
    t.add_argument("--max-attempts", type=int, default=None, help="give up after this many episodes tried")
    t.add_argument("--command-noise-std", type=float, default=0.0,
                   help="Gaussian noise (rad) on each command sent while the policy works (default 0: none)")
    t.add_argument("--command-noise-prob", type=float, default=0.5, help="share of episodes that get command noise")
    t.add_argument("--keep-failed", action="store_true",
                   help="also write dropped episodes, up to the drop (for dynamics data; default: successes only)")
    t.add_argument("--grasp", default=None, help="start-grasp preset of dexndm/conf/grasp/ the policy was trained "
                   "from (e.g. palm_rest for the released generalist)")
    t.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the rotation env, dotted, YAML value (e.g. --env max_sag=null); repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


def _load_hand_config(path: str, wrist: str) -> dict:
    """A hand YAML as a plain dict, ``${wrist}`` resolved to the collection's wrist."""
    from omegaconf import OmegaConf

    node = OmegaConf.create({"wrist": wrist, "hand": OmegaConf.load(path)})
    return OmegaConf.to_container(node, resolve=True)["hand"]


def _collect_on_hand(args: argparse.Namespace, progress) -> int:
    from dexndm.collect.hardware import collect_on_hand, hand_spec_from_args

    if args.strategy == "task_aware":
        raise ValueError("task_aware runs the policy in simulation; --hand takes chaos_box, free_hand or base_waves")
    if args.balls is not None:
        raise ValueError("--balls is for the simulated Chaos Box; with --hand no balls are simulated (on a real "
                         "hand the Chaos Box is a physical box)")
    base = _load_hand_config(args.hand_config, args.wrist) if args.hand_config else None
    spec = hand_spec_from_args(args.hand, base=base, domain=args.domain, port=args.port, baudrate=args.baudrate,
                               max_step=args.max_step, grasp_dir=args.grasp_dir)
    summary = collect_on_hand(args.strategy, out=args.out, episodes=args.episodes, hand=spec,
                              source_file=args.source, wrist=args.wrist, episode_steps=args.steps,
                              noise_prob=args.noise_prob, noise_std=args.noise_std, seed=args.seed,
                              settle_ticks=args.settle_ticks, max_bus_errors=args.max_bus_errors, progress=progress)
    if summary["reason"] != "done":
        print(f"dexndm collect: {summary['message']}", file=sys.stderr)
    print(json.dumps(summary))
    return EXIT[summary["reason"]]


def task_env(grasp: str | None, items: list[str], grasp_dir: str | None = None) -> dict:
    """The task env's settings from ``--grasp PRESET``, ``--env KEY=VALUE`` items and ``--grasp-dir``
    (a partial EnvConfig dict; unknown keys or presets raise with what is valid)."""
    from omegaconf import OmegaConf

    from dexndm.sim.config import with_overrides

    env: dict = {"grasp_dir": grasp_dir} if grasp_dir else {}
    if grasp:
        presets = Path(__file__).resolve().parents[1] / "conf" / "grasp"
        path = presets / f"{grasp}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"--grasp {grasp}: no such preset; presets: {sorted(p.stem for p in presets.glob('*.yaml'))}")
        env["grasp"] = OmegaConf.to_container(OmegaConf.load(path))
    if items:
        with_overrides(env, items)                     # validates the keys and values, names a bad one
        env = OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(env), OmegaConf.from_dotlist(list(items))))
    return env


#: Options whose value is itself a KEY=VALUE pair, passed through ``key_value_args`` untouched.
VERBATIM_VALUES = ("--env",)


def key_value_args(argv: list[str]) -> list[str]:
    """Accept the ``key=value`` spelling of the other commands too: ``strategy=chaos_box hand=leap
    out=f.h5`` -> ``chaos_box --hand leap --out f.h5`` (underscores in keys become dashes)."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if out and out[-1] in VERBATIM_VALUES:             # --env max_sag=null: the value is KEY=VALUE itself
            out.append(arg)
        elif sep and not arg.startswith("-") and key.replace("_", "").isalnum():
            out += [value] if key == "strategy" else [f"--{key.replace('_', '-')}", value]
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    import sys

    args = _parser().parse_args(key_value_args(list(sys.argv[1:] if argv is None else argv)))
    progress = False if args.quiet else "auto"
    if args.hand is not None:
        from dexndm.deploy.bus import BusError

        try:
            return _collect_on_hand(args, progress)
        except (FileNotFoundError, ValueError) as exc:
            print(f"dexndm collect: {exc}", file=sys.stderr)
            return 2
        except BusError as exc:            # the hand cannot be reached or configured: nothing was moved
            print(f"dexndm collect: {exc}", file=sys.stderr)
            return 1
    if args.strategy == "task_aware":
        try:
            env = task_env(args.grasp, args.env, args.grasp_dir)
        except (FileNotFoundError, ValueError) as exc:
            print(f"dexndm collect: {exc}", file=sys.stderr)
            return 2
        task = dict(policy=args.policy, object_set=args.object_set, axes=args.axes, object_pose=args.object_pose,
                    env=env, max_attempts=args.max_attempts, command_noise_std=args.command_noise_std,
                    command_noise_prob=args.command_noise_prob, keep_failed=args.keep_failed)
    else:
        task = {}
    try:
        summary = collect(args.strategy, out=args.out, episodes=args.episodes, num_envs=args.envs,
                          domain=args.domain or "nominal", source_file=args.source, wrist=args.wrist,
                          episode_steps=args.steps, noise_prob=args.noise_prob, noise_std=args.noise_std,
                          seed=args.seed, num_balls=60 if args.balls is None else args.balls,
                          progress=progress, **task)
    except (FileNotFoundError, ValueError) as exc:
        print(f"dexndm collect: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
