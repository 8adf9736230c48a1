"""Roll out a trained oracle and record its successful trajectories (DexNDM Appendix C).

"Generalist Training via Behaviour Cloning": each per-category oracle is rolled out in
simulation and only the trajectories that survive the full episode (``episode_steps``,
400 in the paper) are kept; they train the BC generalist and pre-train the dynamics
model.  ``rollout_oracle`` rebuilds the environment from the checkpoint's saved env
config (wrist, axes, domain, num_envs, seed overridable), refuses a checkpoint whose
observation layout differs from the one this code builds, steps all environments as
one batch with the policy (deterministic mean by default) and appends every episode
that ends by time -- not by a drop (termination) and not by a physics blow-up -- to a
``TrajectoryWriter`` as soon as it finishes (crash-safe, incremental).

Counting.  ``episodes`` is the number of attempted episodes.  Each episode claims an
attempt when it *starts*, so the stop rule does not favour short (failed) episodes;
environments without a claim keep stepping (the batch is stepped as a whole) but are
not recorded.  Re-running into the same file continues it: trajectories already in the
file count towards ``episodes`` (failed attempts of earlier runs are not stored, so a
continued run may attempt more in total), and the environment is seeded with
``(seed, trajectories already written)`` so a continued run draws new episodes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from dexndm.data.writer import TrajectoryWriter
from dexndm.hand import constants as hc
from dexndm.rl.checkpoint import load_oracle
from dexndm.sim.config import EnvConfig
from dexndm.sim.metrics import EPISODE_METRICS
from dexndm.sim.observations import privileged_layout_of
from dexndm.files import file_sha256

J = hc.NUM_JOINTS
_BLOWUP = EPISODE_METRICS.index("blowup")




def derived_seed(seed: int, written: int) -> int:
    """Env/torch seed of a run that starts with ``written`` trajectories in its file."""
    return int(np.random.SeedSequence([int(seed), int(written)]).generate_state(1)[0])


def rollout_env_config(saved_env: dict, *, num_envs: int | None = None, wrist=None, axes=None, domain=None,
                       seed: int | None = None, grasp_dir: str | None = None) -> EnvConfig:
    """The checkpoint's env config with the rollout's overrides applied."""
    data = json.loads(json.dumps(saved_env))
    for key, value in (("num_envs", num_envs), ("wrist", wrist), ("axes", axes), ("domain", domain),
                       ("seed", seed), ("grasp_dir", grasp_dir)):
        if value is not None:
            data[key] = value
    return EnvConfig.from_dict(data)


def rollout_oracle(checkpoint_path: str | Path, *, out_path: str | Path, num_envs: int, episodes: int,
                   wrist=None, axes=None, domain=None, seed: int = 0, grasp_dir: str | None = None,
                   stochastic: bool = False, privileged_obs: bool = False, device: str = "cpu",
                   verbose: bool = False) -> dict[str, Any]:
    """Roll out one oracle, append its full-length episodes to ``out_path``; return the report.

    Report: ``attempted``/``kept`` (this run), ``existing`` (trajectories in the file
    before), ``total`` (after), ``per_category`` {category: {attempted, kept,
    success_ratio}} and ``per_object``, ``path``, ``checkpoint_sha256``, ``seed`` (the
    derived seed used).
    """
    checkpoint_path = Path(checkpoint_path).resolve()
    if episodes < 0 or num_envs < 1:
        raise ValueError(f"rollout: need episodes >= 0 and num_envs >= 1, got {episodes}, {num_envs}")
    model, meta = load_oracle(checkpoint_path, device=device)
    saved_env = meta["config"]["env"]
    probe = rollout_env_config(saved_env, num_envs=num_envs, wrist=wrist, axes=axes, domain=domain,
                               seed=seed, grasp_dir=grasp_dir)
    built = privileged_layout_of(probe)
    try:
        built.check_compatible(meta["obs_layout"])
    except ValueError as exc:
        raise ValueError(f"refusing checkpoint {checkpoint_path}: its policy reads another observation layout "
                         f"than the environment builds, so its actions would be meaningless. {exc}") from None
    if abs(float(meta["action_scale"]) - probe.action_scale) > 1e-12:
        raise ValueError(f"refusing checkpoint {checkpoint_path}: action_scale {meta['action_scale']} differs "
                         f"from its env config's {probe.action_scale}")

    sha = file_sha256(checkpoint_path)
    rollout_cfg = {"checkpoint": str(checkpoint_path), "num_envs": int(num_envs), "episodes": int(episodes),
                   "wrist": wrist, "axes": axes, "domain": domain, "seed": int(seed), "grasp_dir": grasp_dir,
                   "stochastic": bool(stochastic), "privileged_obs": bool(privileged_obs),
                   "env": probe.to_dict()}
    source = {"kind": "policy", "checkpoint_sha256": sha, "path": str(checkpoint_path)}
    category = probe.object_set

    from dexndm.sim.domain import load_domain

    dom = load_domain(probe.domain)
    with TrajectoryWriter(out_path, domain=dom.to_dict(), source=source, config=rollout_cfg,
                          control_rate_hz=1.0 / dom.control_dt, resume=True,
                          privileged_layout=built.to_dict()) as writer:
        existing = len(writer)
        run_seed = derived_seed(seed, existing)
        remaining = max(int(episodes) - existing, 0)
        report = {"path": str(out_path), "checkpoint": str(checkpoint_path), "checkpoint_sha256": sha,
                  "category": category, "existing": existing, "attempted": 0, "kept": 0, "seed": run_seed,
                  "per_category": {category: {"attempted": 0, "kept": 0, "success_ratio": 0.0}},
                  "per_object": {}}
        if remaining:
            env_cfg = rollout_env_config(saved_env, num_envs=num_envs, wrist=wrist, axes=axes, domain=domain,
                                         seed=run_seed, grasp_dir=grasp_dir)
            _run(model, env_cfg, writer, remaining, report, stochastic=stochastic,
                 record_priv=privileged_obs, seed=run_seed, device=device, verbose=verbose)
        report["total"] = len(writer)
    for stats in (*report["per_category"].values(), *report["per_object"].values()):
        stats["success_ratio"] = stats["kept"] / stats["attempted"] if stats["attempted"] else 0.0
    return report


class _Episodes:
    """Per-env buffers of the episode in flight (only for envs holding an attempt claim)."""

    def __init__(self, n: int):
        self.claimed = np.zeros(n, dtype=bool)
        self.steps = np.zeros(n, dtype=np.int64)
        self.info: list[dict | None] = [None] * n        # episode draws, set when an episode begins
        self.buf: list[dict | None] = [None] * n

    def start(self, i: int, q, pose, tips, target) -> None:
        self.steps[i] = 0
        self.buf[i] = {"q": [q], "object_pose": [pose], "fingertip_state": [tips], "target": [], "action": [],
                       "initial_target": target,
                       "privileged_obs": []}


def _run(model, env_cfg: EnvConfig, writer: TrajectoryWriter, remaining: int, report: dict, *,
         stochastic: bool, record_priv: bool, seed: int, device: str, verbose: bool) -> None:
    from dexndm.sim import make_env

    env = make_env(env_cfg)
    n = int(env.batch_size[0])
    eps = _Episodes(n)
    sampler, oq = env.sampler, env.sampler.object_qpos
    tip_slice = env.priv_layout.slice("fingertip_state")
    category = env_cfg.object_set
    cat_stats = report["per_category"][category]
    generator = torch.Generator().manual_seed(seed)
    episode_steps = env_cfg.episode_steps

    claims_left = remaining

    def begin(ids: np.ndarray, obs: np.ndarray) -> None:
        nonlocal claims_left
        q = env.hand.joint_positions(env.physics.qpos)
        pose = env.physics.qpos[:, oq:oq + 7]
        for i in ids:
            if claims_left <= 0:
                eps.claimed[i] = False
                continue
            claims_left -= 1
            eps.claimed[i] = True
            eps.info[i] = {
                "object_id": sampler.shapes[int(env.object_index[i])].name,
                "params": {"object_mass": float(env.mass[i]), "scale": float(env.object_scale[i])},
                "axis": env.axis[i].copy(), "gravity_dir": env.gravity_dir[i].copy(),
            }
            eps.start(i, q[i].copy(), pose[i].copy(), obs[i, tip_slice].reshape(4, 13).copy(),
                      env.control.target[i].astype(np.float32))

    try:
        td = env.reset()
        obs = td["observation"].numpy()
        begin(np.arange(n), obs)
        while eps.claimed.any():
            obs_t = td["observation"]
            with torch.no_grad():
                if stochastic:
                    loc, scale = model.policy(obs_t.to(device))
                    noise = torch.randn(loc.shape, generator=generator).to(loc.device)
                    action = (loc + scale * noise).clamp(-1.0, 1.0).cpu()
                else:
                    action = model.act(obs_t.to(device)).cpu()
            td["action"] = action
            out = env.step(td)
            nxt = out["next"]
            q = env.hand.joint_positions(env.physics.qpos)
            pose = env.physics.qpos[:, oq:oq + 7]
            target = env.control.target
            next_obs = nxt["observation"].numpy()
            act = nxt["relative_action"].numpy()      # the paper's action, also for pose-action oracles
            obs_np = obs_t.numpy()
            for i in np.flatnonzero(eps.claimed):
                b = eps.buf[i]
                b["q"].append(q[i].copy())
                b["object_pose"].append(pose[i].copy())
                b["fingertip_state"].append(next_obs[i, tip_slice].reshape(4, 13).copy())
                b["target"].append(target[i].copy())
                b["action"].append(act[i].copy())
                if record_priv:
                    b["privileged_obs"].append(obs_np[i].copy())
            eps.steps[eps.claimed] += 1

            ended = nxt["episode_ended"].reshape(n).numpy()
            if not ended.any():
                td = env.step_mdp(out)
                continue
            terminated = nxt["terminated"].reshape(n).numpy()
            blowup = nxt["episode_metrics"][:, _BLOWUP].numpy() > 0.5
            for i in np.flatnonzero(ended & eps.claimed):
                ok = bool(not terminated[i] and not blowup[i] and eps.steps[i] == episode_steps)
                _finish(writer, eps, int(i), ok, category, report, cat_stats, record_priv)
                if verbose:
                    print(f"[rollout] {category}: {report['attempted']} attempted, {report['kept']} kept")
            eps.claimed[ended] = False
            reset_td = TensorDict({"_reset": torch.as_tensor(ended).reshape(n, 1)}, batch_size=[n])
            td = env.reset(reset_td)
            begin(np.flatnonzero(ended), td["observation"].numpy())
    finally:
        env.close()


def _finish(writer: TrajectoryWriter, eps: _Episodes, i: int, ok: bool, category: str, report: dict,
            cat_stats: dict, record_priv: bool) -> None:
    info, b = eps.info[i], eps.buf[i]
    obj = report["per_object"].setdefault(info["object_id"], {"attempted": 0, "kept": 0})
    for stats in (report, cat_stats, obj):
        stats["attempted"] += 1
        stats["kept"] += int(ok)
    eps.buf[i] = None
    if not ok:
        return
    traj = {
        "q": np.stack(b["q"]), "target": np.stack(b["target"]), "action": np.stack(b["action"]),
        "initial_target": b["initial_target"],
        "object_pose": np.stack(b["object_pose"]), "fingertip_state": np.stack(b["fingertip_state"]),
        "axis": info["axis"], "gravity_dir": info["gravity_dir"], "success": True,
        "category": category, "object_id": info["object_id"], "params": info["params"],
    }
    if record_priv:
        traj["privileged_obs"] = np.stack(b["privileged_obs"])
    writer.append(traj)


def format_report(report: dict) -> str:
    lines = [f"[rollout] {report['checkpoint']} -> {report['path']}: attempted {report['attempted']}, "
             f"kept {report['kept']} (file had {report['existing']}, now {report.get('total')})"]
    for name, stats in {**report["per_category"], **report["per_object"]}.items():
        lines.append(f"  {name:<24} {stats['kept']:>6}/{stats['attempted']:<6} success {stats['success_ratio']:.3f}")
    return "\n".join(lines)
