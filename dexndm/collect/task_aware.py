"""Task-aware collection: the policy itself rotating objects in the target domain (DexNDM Sec. 5,
"Real-World Data Collection Strategies"; Appendix C, "Task-Relevant Data w/ Obj. Pose").

The paper's baseline to Chaos Box data: roll out the rotation policy on the target hand and
keep the transitions of successful episodes, with or without object poses.  Here the
policy is any spec of ``dexndm.eval.policies`` (a generalist, optionally with its residual,
or an oracle) acting in a ``RotationEnv`` built with the target domain.  Only *successful*
episodes are written: full length (``episode_steps``), object not dropped, no physics
blow-up -- the same rule as the sim rollouts that train the generalist (Appendix C).

Recorded per episode (dataset schema of ``dexndm.data``): q [T+1, 16] (true joint
positions), target [T, 16] (what the hand was commanded: the chain a_t plus the residual
where there is one, clamped -- q_{t+1} follows it), action [T, 16] (the policy's relative
action), initial_target (reset pose), axis, gravity_dir, object_id, category, params
(strategy, policy, object mass and scale), and with ``object_pose=True`` the object's
position and quaternion [T+1, 7] (hand frame = world frame).

Two options, beyond the paper, make the data say more about how the target hand answers its
commands in task states (what the residual needs from the dynamics model):
``command_noise_std`` adds Gaussian noise (rad, per step and joint) to the command sent in a
``command_noise_prob`` share of the episodes (the Chaos Box's noise, applied while the policy
works; the recorded target is the noisy command the hand followed), and ``keep_failed`` writes
dropped episodes too, up to the drop (``success`` False; blow-ups are never written).  With
``keep_failed`` the envs run in rounds: each env's episode is written when it ends, and all envs
restart together once every counted episode of the round has ended (params ``round`` and ``env``).
Restarting an env as soon as it drops would fill the file with the shortest episodes: the states
of grasps that fail at once, not those the policy meets while it works.

Envs step as one batch and (successes only) restart when their episode ends.  ``episodes`` is the
number of successful episodes the file should hold in total; a run into an existing file
continues it (same domain and policy required by the writer), seeded with (seed,
episodes already written).  At most ``max_attempts`` episodes are attempted, so a policy
that never succeeds in the target domain stops with a report instead of running forever.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from tensordict import TensorDict

from dexndm.collect.progress import CollectProgress
from dexndm.data.writer import TrajectoryWriter
from dexndm.hand import constants as hc
from dexndm.sim.metrics import EPISODE_METRICS

J = hc.NUM_JOINTS
_BLOWUP = EPISODE_METRICS.index("blowup")
#: Env fields task_aware sets itself (give them as collect arguments, not in ``env``).
_OWN_FIELDS = ("num_envs", "seed", "domain", "object_set", "wrist", "axes", "episode_steps", "goal_mode")


def derived_seed(seed: int, written: int) -> int:
    """Env seed of a run that starts with ``written`` episodes in its file."""
    return int(np.random.SeedSequence([int(seed), int(written)]).generate_state(1)[0])


class _Buffers:
    """The episode in flight of every env: q, targets, actions, object poses, step count."""

    def __init__(self, n: int, steps: int):
        self.q = np.zeros((n, steps + 1, J), dtype=np.float32)
        self.target = np.zeros((n, steps, J), dtype=np.float32)
        self.action = np.zeros((n, steps, J), dtype=np.float32)
        self.pose = np.zeros((n, steps + 1, 7), dtype=np.float32)
        self.initial = np.zeros((n, J), dtype=np.float32)
        self.t = np.zeros(n, dtype=np.int64)
        self.info: list[dict[str, Any]] = [{} for _ in range(n)]

    def begin(self, env, ids: np.ndarray) -> None:
        q, pose = env.hand.joint_positions(env.physics.qpos), _object_pose(env)
        for i in ids:
            self.t[i] = 0
            self.q[i, 0], self.pose[i, 0] = q[i], pose[i]
            self.initial[i] = env.control.sent[i]
            self.info[i] = {"object_id": env.sampler.shapes[int(env.object_index[i])].name,
                            "axis": env.axis[i].astype(np.float32),
                            "gravity_dir": env.gravity_dir[i].astype(np.float32),
                            "mass": float(env.mass[i]), "scale": float(env.object_scale[i])}

    def record(self, env, action: np.ndarray) -> None:
        """Append the step just taken by every env (the command sent, the state reached)."""
        n = len(self.t)
        t = np.minimum(self.t, self.target.shape[1] - 1)   # an over-long episode only overwrites its last slot
        rows = np.arange(n)
        self.target[rows, t] = env.control.sent
        self.action[rows, t] = action
        self.q[rows, t + 1] = env.hand.joint_positions(env.physics.qpos)
        self.pose[rows, t + 1] = _object_pose(env)
        self.t += 1


def _object_pose(env) -> np.ndarray:
    oq = env.sampler.object_qpos
    return env.physics.qpos[:, oq:oq + 7]


def collect_task_aware(*, out: str | Path, episodes: int, num_envs: int, policy: Any, domain: Any = "nominal",
                       object_set: str = "cylinders", wrist: Any = "palm_down", axes: Any = "z",
                       episode_steps: int = 400, seed: int = 0, object_pose: bool = False,
                       env: Mapping[str, Any] | None = None, max_attempts: int | None = None,
                       command_noise_std: float = 0.0, command_noise_prob: float = 0.5, keep_failed: bool = False,
                       progress: Any = "auto") -> dict:
    """Roll ``policy`` out in ``domain`` until ``out`` holds ``episodes`` successful episodes (or
    ``max_attempts`` were tried, default 20 per missing episode); return a summary dict
    (written, attempted, succeeded, dropped, blowups, success_ratio = succeeded / attempted,
    complete = the file holds ``episodes``).

    ``policy``: a spec (``generalist:G.ckpt[+residual:R.ckpt]``, ``oracle:P.pt``, ``zero``);
    ``env``: further ``EnvConfig`` fields (grasp_dir, nthread, randomization, ...);
    ``command_noise_std`` / ``command_noise_prob`` / ``keep_failed``: see the module docstring
    (with ``keep_failed``, ``episodes`` counts every episode written).
    """
    from dexndm.eval.policies import load_policy, parse_policy
    from dexndm.sim import make_env
    from dexndm.sim.config import EnvConfig
    from dexndm.sim.domain import load_domain

    if episodes < 0 or num_envs < 1 or episode_steps < 1:
        raise ValueError("need episodes >= 0, num_envs >= 1, episode_steps >= 1")
    if command_noise_std < 0 or not 0.0 <= command_noise_prob <= 1.0:
        raise ValueError(f"need command_noise_std >= 0 and command_noise_prob in [0, 1], got {command_noise_std}, "
                         f"{command_noise_prob}")
    if policy is None:
        raise ValueError("strategy 'task_aware' rolls out a policy: give policy= (e.g. "
                         "'generalist:g.ckpt+residual:r.ckpt' or 'oracle:last.pt')")
    extra = dict(env or {})
    clash = sorted(set(extra) & set(_OWN_FIELDS))
    if clash:
        raise ValueError(f"task_aware: env{clash} are collect arguments; pass them as such")
    spec = parse_policy(policy)
    pol = load_policy(spec)
    dom = load_domain(domain)
    env_fields = {**pol.env_requirements(), **extra, "domain": domain, "object_set": object_set, "wrist": wrist,
                  "axes": axes, "episode_steps": int(episode_steps), "num_envs": int(num_envs)}
    EnvConfig.from_dict(env_fields)                                      # refuse bad fields before writing
    source = {"kind": "collection", "strategy": "task_aware", "policy": str(spec),
              "checkpoint_sha256": pol.meta.get("checkpoint_sha256"),
              "residual_sha256": pol.meta.get("residual_sha256")}
    config = {"strategy": "task_aware", "policy": str(spec), "num_envs": num_envs, "object_set": object_set,
              "wrist": _plain(wrist), "axes": _plain(axes), "episode_steps": episode_steps, "seed": seed,
              "object_pose": bool(object_pose), "env": {k: _plain(v) for k, v in extra.items()},
              "command_noise_std": float(command_noise_std), "command_noise_prob": float(command_noise_prob),
              "keep_failed": bool(keep_failed)}
    summary = {"out": str(out), "strategy": "task_aware", "policy": str(spec), "written": 0, "attempted": 0,
               "succeeded": 0, "dropped": 0, "blowups": 0}
    with TrajectoryWriter(out, domain=dom.to_dict(), source=source, config=config,
                          control_rate_hz=1.0 / dom.control_dt) as writer:
        existing = len(writer)
        summary["existing"] = existing
        missing = max(int(episodes) - existing, 0)
        limit = int(max_attempts) if max_attempts is not None else 20 * missing + num_envs
        if missing:
            e = make_env(env_fields, seed=derived_seed(seed, existing))
            bar = CollectProgress("task_aware", episodes, existing, progress)
            try:
                pol.check_env(e)
                noise = _CommandNoise(float(command_noise_std), float(command_noise_prob), int(num_envs),
                                      np.random.default_rng([int(seed), existing]))
                _run(e, pol, writer, int(episodes), limit, bool(object_pose), spec.default_name(), summary, bar,
                     noise, bool(keep_failed))
            finally:
                bar.close()
                e.close()
        summary["episodes"] = len(writer)
    summary["success_ratio"] = summary["succeeded"] / summary["attempted"] if summary["attempted"] else None
    summary["complete"] = summary["episodes"] >= episodes
    return summary


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else np.asarray(value).tolist()


class _CommandNoise:
    """Per-episode choice of which envs get command noise, and the per-step noise itself."""

    def __init__(self, std: float, prob: float, n: int, rng: np.random.Generator):
        self.std, self.prob, self.rng = std, prob, rng
        self.on = np.zeros(n, dtype=bool)

    def begin(self, ids: np.ndarray) -> None:
        self.on[ids] = self.rng.random(len(ids)) < self.prob if self.std > 0 else False

    def apply(self, td) -> None:
        """Add the noise to the step input's ``target_offset`` (created where the policy has no residual)."""
        if not self.on.any():
            return
        noise = self.rng.normal(0.0, self.std, (len(self.on), J)) * self.on[:, None]
        offset = td.get("target_offset", None)
        noise = torch.as_tensor(noise, dtype=torch.float32)
        td["target_offset"] = noise if offset is None else offset + noise


def _run(env, policy, writer: TrajectoryWriter, episodes: int, limit: int, object_pose: bool, policy_name: str,
         summary: dict, bar: CollectProgress, noise: _CommandNoise, keep_failed: bool) -> None:
    n, steps = int(env.batch_size[0]), int(env.cfg.episode_steps)
    buf = _Buffers(n, steps)
    td = env.reset()
    buf.begin(env, np.arange(n))
    noise.begin(np.arange(n))
    rounds = 0
    pending = _round(n, episodes - len(writer))        # keep_failed: the envs whose episode this round counts
    while len(writer) < episodes and summary["attempted"] < limit:
        with torch.no_grad():
            td = policy.step_input(td, env)
        noise.apply(td)
        td = env.step(td)["next"]
        buf.record(env, td["relative_action"].numpy())     # what the chain applied (pose-action oracles too)
        ended = td["episode_ended"].reshape(n).numpy()
        if keep_failed:
            ended = ended & pending
        if not ended.any():
            continue
        dropped = td["terminated"].reshape(n).numpy()
        blowup = td["episode_metrics"][:, _BLOWUP].numpy() > 0.5
        for i in np.flatnonzero(ended):
            summary["attempted"] += 1
            summary["dropped"] += int(dropped[i] and not blowup[i])
            summary["blowups"] += int(blowup[i])
            success = not (dropped[i] or blowup[i] or buf.t[i] != steps)
            summary["succeeded"] += int(success)
            length = int(min(buf.t[i], steps))
            if not (success or (keep_failed and not blowup[i] and length >= 2)):
                continue
            if len(writer) >= episodes:                  # the file is full: an episode of the last batch
                continue
            info = buf.info[i]
            traj = {"q": buf.q[i, :length + 1], "target": buf.target[i, :length], "action": buf.action[i, :length],
                    "initial_target": buf.initial[i], "axis": info["axis"], "gravity_dir": info["gravity_dir"],
                    "success": bool(success), "object_id": info["object_id"], "category": env.cfg.object_set,
                    "params": {"strategy": "task_aware", "policy": policy_name, "object_mass": info["mass"],
                               "scale": info["scale"], "noisy": bool(noise.on[i]),
                               "noise_std": noise.std if noise.on[i] else 0.0}}
            if keep_failed:
                traj["params"] |= {"round": rounds, "env": int(i)}
            if object_pose:
                traj["object_pose"] = buf.pose[i, :length + 1]
            writer.append(traj)
            summary["written"] += 1
        bar.update(len(writer), attempted=summary["attempted"], kept=summary["written"])
        if keep_failed:
            pending &= ~ended
            if pending.any():
                continue                                   # the others of the round go on; the ended ones idle
            ended[:] = True
            rounds += 1
            pending = _round(n, episodes - len(writer))
        td = env.reset(TensorDict({"_reset": torch.as_tensor(ended).reshape(n, 1)}, batch_size=[n]))
        buf.begin(env, np.flatnonzero(ended))
        noise.begin(np.flatnonzero(ended))


def _round(n: int, missing: int) -> np.ndarray:
    """The envs [n] whose episodes a new round counts: the first ``missing`` (all when more are missing)."""
    pending = np.zeros(n, dtype=bool)
    pending[:max(min(n, missing), 0)] = True
    return pending
