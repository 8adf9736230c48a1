"""Sim steps from the target hand's own states: data for a reference model that is right where the residual acts.

Section 9 of ``residual_diagnosis.md`` found that the sim-pretrained model, asked what the sim hand would do from
the target hand's states, misses by the whole gap: it never saw histories in which the joints lag as a weak hand's
do.  A simulator can be put into such a state.  For every window of a trajectory file recorded on the target hand
(``dexndm collect task_aware ... --keep-failed``), this script sets the SOURCE domain's free hand (no object, no
balls: on a real hand the object's pose is not measured) to the window's last measured joints, with velocities from
the last two, holds the previous command, steps one control step under the window's last command, and writes a
trajectory of the window's measured joints followed by the sim's answer.  Fine-tuning the sim-pretrained model on
it (``dexndm train experiment=jointwise_finetune``) gives a reference whose gap to the target model can be checked
against the true gap with ``ideal_residual.py --gap-probe`` before a residual is trained through it.

    PYTHONPATH=. python experiments/pipeline_cylinders_tip/reset_reference.py \\
        --target-rollouts outputs/run/target_rollouts/target_rollouts.h5 --out outputs/reset_reference.h5
"""

from __future__ import annotations

import argparse

import numpy as np

from dexndm.collect.strategies import PLACEHOLDER_AXIS
from dexndm.data.reader import TrajectoryFile
from dexndm.data.writer import TrajectoryWriter
from dexndm.sim import make_chaos_box
from dexndm.sim.domain import load_domain


def windows(path: str, steps: int, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q [K, steps], targets [K, steps], gravity [K, 3]) of every ``stride``-th window of ``steps`` measured steps."""
    qs, targets, gravity = [], [], []
    with TrajectoryFile(path) as f:
        for _, t in f.iter(fields=["q", "target", "gravity_dir"]):
            for end in range(steps, len(t["target"]) + 1, stride):   # q[end - 1] is the state stepped from
                qs.append(t["q"][end - steps:end])
                targets.append(t["target"][end - steps:end])
                gravity.append(t["gravity_dir"])
    if not qs:
        raise SystemExit(f"{path}: no trajectory holds {steps} steps")
    return np.stack(qs), np.stack(targets), np.stack(gravity)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target-rollouts", required=True, help="trajectory file recorded on the target hand")
    p.add_argument("--out", required=True)
    p.add_argument("--source-domain", default="nominal")
    p.add_argument("--wrist", default="palm_up")
    p.add_argument("--window", type=int, default=10, help="steps of history each written trajectory keeps")
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--envs", type=int, default=256)
    args = p.parse_args()

    q, a, gravity = windows(args.target_rollouts, args.window, args.stride)
    dom = load_domain(args.source_domain)
    env = make_chaos_box(num_envs=args.envs, domain=args.source_domain, wrist=args.wrist, num_balls=0, nthread=1)
    env.reset()
    physics, hand, dt = env.physics, env.hand, dom.control_dt
    source = {"kind": "collection", "strategy": "reset_reference", "target_rollouts": args.target_rollouts}
    config = {"strategy": "reset_reference", "window": args.window, "stride": args.stride, "wrist": args.wrist}
    with TrajectoryWriter(args.out, domain=dom.to_dict(), source=source, config=config,
                          control_rate_hz=1.0 / dt) as writer:
        for start in range(0, len(q), args.envs):
            k = min(args.envs, len(q) - start)
            ids = np.arange(k)
            qpos, qvel = physics.qpos[ids].copy(), np.zeros((k, physics.nv))
            hand.set_joint_positions(qpos, q[start:start + k, -1])
            qvel[:, hand.motor_dof] = (q[start:start + k, -1] - q[start:start + k, -2]) / dt
            physics.set_state(ids, qpos, qvel)
            physics.forward(ids)
            hold = np.tile(a[start:start + k, -2][:1], (len(physics.qpos), 1))
            hold[ids] = a[start:start + k, -2]                         # the command in effect before a_t
            env.control.reset(np.arange(len(hold)), hold)
            command = hold.copy()
            command[ids] = a[start:start + k, -1]
            physics.step(env.control.absolute(command), None)
            q_next = hand.joint_positions(physics.qpos[ids])
            for i in range(k):
                writer.append({"q": np.concatenate([q[start + i], q_next[i][None]]).astype(np.float32),
                               "target": a[start + i].astype(np.float32),
                               "initial_target": a[start + i, 0].astype(np.float32),
                               "axis": PLACEHOLDER_AXIS,
                               "gravity_dir": gravity[start + i].astype(np.float32), "success": True,
                               "params": {"strategy": "reset_reference"}})
    env.close()
    print(f"{len(q)} windows -> {args.out}")


if __name__ == "__main__":
    main()
