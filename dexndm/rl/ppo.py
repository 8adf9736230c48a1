"""PPO training of one oracle policy on the privileged observation (DexNDM Sec. 3.1, App. A.1, C).

One oracle per object category (``env.object_set``), trained with PPO on the batched
MuJoCo rotation environment.  Each iteration: TorchRL's ``Collector`` runs the
stochastic policy for ``horizon`` steps in every environment (auto-reset, env on CPU,
networks on ``device``); ``batch_values`` evaluates the critic once per frame and ``GAE``
computes advantages and value targets from those values (time-outs bootstrap, drops do
not); the value normaliser folds in the new targets; then ``epochs`` passes of
``num_minibatches`` minibatches of ``OraclePPOLoss`` with Adam, gradient clipping and
Hora's KL-adaptive learning rate; finally the observation
normaliser folds in the batch (so the update itself starts from the behaviour policy).

Exact resume.  The physics state of hundreds of environments is not checkpointed.
Instead every run starts with a full reset of all environments, and so does the
uninterrupted run at every checkpoint boundary: ``_boundary()`` saves the checkpoint
(RNG states, counters, weights, optimiser, schedule -- everything the reset and what
follows consume) and then resets every environment.  A run resumed from that
checkpoint restores the same state and performs the same reset, so it continues
exactly as the uninterrupted run (tested to 1e-6 on the parameters).  The cost is
that episodes are cut every ``checkpoint_every`` iterations; keep it large (the
default, 100 iterations of 32 steps, cuts every 3200 steps: every 8th full-length
episode of 400 steps).  After each full reset ``stagger_episodes`` (on by default) cuts
the new episodes at random lengths: an oracle that holds on would otherwise keep every
env in lockstep, and each batch would hold one phase of the episode (measured on a
cuboid oracle cut every 320 steps: per-step rotation reward 0.22-0.25 in the batch of
steps 0-31, 0.03-0.05 from step ~150 on).  Exactness holds on CPU; CUDA kernels may be
nondeterministic.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torchrl.collectors import Collector
from torchrl.objectives.value import GAE

from dexndm.files import file_sha256
from dexndm.hand import constants as hc
from dexndm.rl.checkpoint import (capture_rng, from_json, lineage_frames, load_checkpoint, restore_rng,
                                  save_checkpoint, to_json, with_legacy_values)
from dexndm.conf import to_plain
from dexndm.rl.config import PPOConfig, resolve_precision
from dexndm.rl.exploration import CorrelatedNoiseActor
from dexndm.rl.graceful_stop import GracefulStop
from dexndm.rl.logger import TrainLogger
from dexndm.rl.loss import AdaptiveLR, OraclePPOLoss
from dexndm.rl.networks import ActorCritic, make_actor, make_critic
from dexndm.sim import make_env
from dexndm.sim.config import EnvConfig
from dexndm.sim.metrics import EPISODE_METRICS
from dexndm.sim.reward import TERMS

#: Keys the update reads from a collected batch (the rest is dropped before minibatching).
_UPDATE_KEYS = ("observation", "action", "action_log_prob", "loc", "scale", "advantage", "value_target",
                "state_value")
#: Config keys that may change when resuming (everything else must match the checkpoint).
_RESUMABLE_CHANGES = {"total_frames", "device", "out_dir", "resume", "progress", "tensorboard", "print_every",
                      "keep_history", "checkpoint_every", "env.grasp_dir", "env.nthread", "env.grasp_generate",
                      "init_from", "stagger_episodes", "torch_threads"}


@dataclass
class RunSettings:
    """Run-level settings of ``train_oracle`` (the top level of its config, besides env/ppo)."""

    out_dir: str
    total_frames: int = 5_000_000
    checkpoint_every: int = 100      # iterations between checkpoints (and full env resets)
    resume: str | bool = "auto"      # auto: out_dir/checkpoints/last.pt if present | never | a checkpoint path
    device: str = "auto"             # auto: cuda when available | cpu | cuda[:k]
    seed: int = 0
    progress: str | bool = "auto"    # rich progress bar: auto = only on a TTY
    tensorboard: bool = True
    print_every: int = 10            # without a bar, print a summary line every this many iterations
    keep_history: bool = False       # also keep checkpoints/iter_XXXXXX.pt at every boundary
    init_from: str | None = None     # a fresh run starts from this oracle's weights and normalisers
    stagger_episodes: bool = True    # after each full reset, cut the first episodes at random lengths
    torch_threads: int | None = None  # CPU threads of torch's ops during run(); None keeps torch's default

    @classmethod
    def from_dict(cls, data: dict) -> "RunSettings":
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - names - {"env", "ppo", "domain"})
        if unknown:
            raise ValueError(f"train_oracle: unknown top-level keys {unknown}; valid: {sorted(names | {'env', 'ppo'})}")
        if "out_dir" not in data:
            raise ValueError("train_oracle: out_dir is required (where checkpoints and logs go)")
        run = cls(**{k: v for k, v in data.items() if k in names})
        if run.total_frames < 1 or run.checkpoint_every < 1:
            raise ValueError("train_oracle: total_frames and checkpoint_every must be >= 1")
        if run.torch_threads is not None and (isinstance(run.torch_threads, bool) or int(run.torch_threads) < 1):
            raise ValueError(f"train_oracle: torch_threads must be null (torch's default) or >= 1, "
                             f"got {run.torch_threads!r}")
        return run


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={spec!r} but CUDA is not available here; use device=auto or device=cpu")
    return device


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


class PPOTrainer:
    """Builds env, networks, loss, collector from a config mapping; ``run()`` trains to ``total_frames``.

    ``cfg`` has ``env`` (``EnvConfig`` fields), ``ppo`` (``PPOConfig`` fields) and the
    ``RunSettings`` fields at the top level.
    """

    def __init__(self, cfg):
        self.cfg = from_json(to_json(to_plain(cfg)))  # plain, JSON-safe data
        self.run_cfg = RunSettings.from_dict(self.cfg)
        self.ppo = PPOConfig.from_dict(self.cfg.get("ppo"))
        self.cfg["ppo"] = self.ppo.to_dict()
        # every env setting, defaults included, so a resume compares what actually runs
        self.cfg["env"] = from_json(to_json(EnvConfig.from_dict(self.cfg.get("env")).to_dict()))
        self.out_dir = Path(self.run_cfg.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.device = resolve_device(self.run_cfg.device)
        self.resumed_from: str | None = None
        self.initialised_from: str | None = None
        ckpt = self._find_checkpoint()
        self.ppo.precision = self.cfg["ppo"]["precision"] = resolve_precision(self.ppo.precision, self.device)

        torch.manual_seed(self.run_cfg.seed)
        self.env = make_env(self.cfg["env"])
        self.num_envs = int(self.env.batch_size[0])
        self.obs_dim = int(self.env.observation_spec["observation"].shape[-1])
        self.act_dim = int(self.env.action_spec.shape[-1])
        self.frames_per_batch = self.num_envs * self.ppo.horizon
        if self.frames_per_batch % self.ppo.num_minibatches:
            raise ValueError(f"num_envs * horizon = {self.frames_per_batch} is not divisible by "
                             f"ppo.num_minibatches = {self.ppo.num_minibatches}")

        self.model = ActorCritic(self.obs_dim, self.act_dim, self.ppo).to(self.device)
        self.actor = make_actor(self.model)
        self.critic = make_critic(self.model)
        self.loss = OraclePPOLoss(
            self.actor, self.critic, value_norm=self.model.value_norm, bounds_coeff=self.ppo.bounds_coeff,
            bounds_limit=self.ppo.bounds_limit, clip_epsilon=self.ppo.clip, clip_value=self.ppo.clip_value,
            entropy_bonus=True, entropy_coeff=self.ppo.entropy_coeff, critic_coeff=self.ppo.critic_coeff,
            loss_critic_type="l2", normalize_advantage=False)
        # values come from batch_values (one trunk pass per frame), not from GAE's own two passes
        self.gae = GAE(gamma=self.ppo.gamma, lmbda=self.ppo.lmbda, value_network=None, average_gae=False,
                       device=self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.ppo.lr)
        self.schedule = AdaptiveLR(self.ppo.lr, self.ppo.kl_target, self.ppo.min_lr, self.ppo.max_lr,
                                   self.ppo.lr_schedule)
        self.iteration = 0
        self.frames = 0
        self._t_start = time.perf_counter()
        self._elapsed_before = 0.0       # wall time of the runs this one resumes
        # frames of the runs this one was warm-started from (init_from, recursively): the budget's lineage
        self.lineage = {"frames_before": 0, "complete": True, "parents": []}
        if ckpt is not None:
            self._load_training_state(ckpt)
        elif self.run_cfg.init_from:
            self._init_weights(Path(str(self.run_cfg.init_from)))

        # the behaviour policy: the actor's Gaussian, with white or time-correlated noise
        self.explorer = (CorrelatedNoiseActor(self.model, self.ppo.noise_correlation)
                         if self.ppo.noise_correlation > 0 else None)
        self.collector = Collector(
            self.env, self.actor if self.explorer is None else self.explorer, frames_per_batch=self.frames_per_batch, total_frames=-1,
            env_device=self.env.device, policy_device=self.device, storing_device=self.device,
            track_traj_ids=False, auto_register_policy_transforms=False)
        if ckpt is not None:
            restore_rng(ckpt["rng"], self.env.rng)
            self.env.env0_resets = int(ckpt["counters"]["env0_resets"])
            self.env.control_steps = int(ckpt["counters"].get("control_steps", 0))
        self._full_reset()          # every run starts from a full reset (see module docstring)
        self._batches = iter(self.collector)
        self.logger = None

    # ------------------------------------------------------------------ resume
    def _find_checkpoint(self) -> dict | None:
        resume = self.run_cfg.resume
        if resume in (False, None, "never", "false", "no"):
            return None
        path = self.ckpt_dir / "last.pt" if resume in (True, "auto", "true") else Path(str(resume))
        if resume in (True, "auto", "true") and not path.exists():
            return None
        ckpt = load_checkpoint(path, map_location=self.device)
        # a setting added to the code since the checkpoint counts as what the code did before it
        saved = _flatten(with_legacy_values(from_json(ckpt["config"])))
        if self.ppo.precision == "auto":    # a resumed run keeps the precision it was trained in
            self.ppo.precision = self.cfg["ppo"]["precision"] = saved["ppo.precision"]
        now = _flatten(self.cfg)
        diff = sorted(k for k in set(saved) | set(now) if k not in _RESUMABLE_CHANGES and saved.get(k) != now.get(k))
        if diff:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diff[:8])
            raise ValueError(f"cannot resume from {path}: the config differs in {detail}. Resume with the "
                             "checkpoint's settings, or start a new run (another out_dir, or resume=never).")
        self.resumed_from = str(path)
        return ckpt

    def _load_training_state(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["schedule"])
        self.schedule.apply(self.optimizer)
        self.iteration = int(ckpt["counters"]["iteration"])
        self.frames = int(ckpt["counters"]["frames"])
        self._elapsed_before = float(ckpt.get("wall_s", 0.0))
        before = lineage_frames(ckpt)
        self.lineage = {"frames_before": before["frames"] - self.frames, "complete": before["complete"],
                        "parents": before["parents"]}

    def _init_weights(self, path: Path) -> None:
        """Warm start: the policy, value head and normalisers of another oracle, its Adam moments,
        and a learning rate no higher than the one its adaptive schedule had reached; counters and
        the reward/gravity schedules start fresh (e.g. widen palm-up training to more orientations).

        A fresh Adam at ``ppo.lr`` (5e-3) moved a converged oracle (17M frames, its schedule at
        4.4e-4) so far in the first update that the KL to the old policy was 43 and the warm-started
        run dropped nearly every object; carrying the moments and the reached rate avoids that.
        Lower ``ppo.lr`` to start lower still."""
        ckpt = load_checkpoint(path, map_location=self.device)
        if (int(ckpt["obs_dim"]), int(ckpt["act_dim"])) != (self.obs_dim, self.act_dim):
            raise ValueError(f"init_from={path}: its observation/action sizes {ckpt['obs_dim']}/{ckpt['act_dim']} "
                             f"differ from this run's {self.obs_dim}/{self.act_dim}; it cannot initialise this policy")
        saved = from_json(ckpt["config"]).get("ppo", {})
        if saved.get("hidden") != self.ppo.hidden or saved.get("critic_hidden") != self.ppo.critic_hidden:
            raise ValueError(f"init_from={path}: network {saved.get('hidden')} / critic {saved.get('critic_hidden')} "
                             f"differs from ppo.hidden={self.ppo.hidden} / ppo.critic_hidden={self.ppo.critic_hidden}")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.lr = min(self.schedule.lr, float(ckpt["schedule"]["lr"]))
        self.schedule.apply(self.optimizer)
        self.initialised_from = str(path)
        parent = lineage_frames(ckpt)
        self.lineage = {"frames_before": parent["frames"], "complete": parent["complete"],
                        "parents": [{"path": str(path), "sha256": file_sha256(path)}] + parent["parents"]}

    def checkpoint_payload(self) -> dict:
        env = self.env
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "obs_norm": self.model.obs_norm.stats(),
            "value_norm": self.model.value_norm.stats(),
            "schedule": self.schedule.state_dict(),
            "counters": {"iteration": self.iteration, "frames": self.frames, "env0_resets": int(env.env0_resets),
                         "control_steps": int(env.control_steps),
                         "blowups": int(env.blowups)},
            "rng": capture_rng(env.rng),
            "wall_s": self._elapsed(),
            "lineage": dict(self.lineage),
            "config": to_json(self.cfg),
            "obs_layout": env.priv_layout.to_dict(),
            "joint_order": list(hc.JOINT_NAMES),
            "action_scale": float(env.cfg.action_scale),
            "control_rate_hz": float(1.0 / env.dt),
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "versions": _versions(),
        }

    def _boundary(self, reset: bool = True) -> Path:
        """Save ``last.pt`` (state before the reset), then reset every env: the resume point."""
        payload = self.checkpoint_payload()
        path = save_checkpoint(self.ckpt_dir / "last.pt", payload)
        if self.run_cfg.keep_history:
            save_checkpoint(self.ckpt_dir / f"iter_{self.iteration:06d}.pt", payload)
        if reset:
            self._full_reset()
        return path

    def _full_reset(self) -> None:
        """Reset every env (and the exploration noise); with ``stagger_episodes`` the episodes
        that start now end at random lengths, so that batches mix episode phases."""
        self.collector.reset()
        if self.run_cfg.stagger_episodes:
            self.env.stagger_episodes()
        if self.explorer is not None:
            self.explorer.reset_noise()  # the collector's construction ran the policy once

    # ------------------------------------------------------------------ training
    def iterate(self) -> dict:
        """Collect one batch, update, return the logged row."""
        physics_before = self.env.physics.step_seconds
        t0 = time.perf_counter()
        batch = next(self._batches)                                  # [N, T]
        t1 = time.perf_counter()
        stats = self._update(batch)
        self.model.obs_norm.update(batch["observation"])
        t2 = time.perf_counter()
        self.iteration += 1
        self.frames += batch.numel()
        return self._row(batch, stats, collect_s=t1 - t0, update_s=t2 - t1,
                         physics_s=self.env.physics.step_seconds - physics_before)

    def _update(self, batch) -> dict:
        ppo = self.ppo
        self.model.train()
        with torch.no_grad():
            batch_values(self.model, batch)
            self.gae(batch)
            self.model.value_norm.update(batch["value_target"])
            if ppo.normalize_advantage:
                adv = batch["advantage"]
                batch["advantage"] = (adv - adv.mean()) / (adv.std() + 1e-8)
        flat = batch.select(*_UPDATE_KEYS).reshape(-1)
        n = flat.numel()
        size = n // ppo.num_minibatches
        sums: dict[str, float] = {}
        epoch_kls = []
        for _ in range(ppo.epochs):
            perm = torch.randperm(n).to(self.device)
            kls = []
            for k in range(ppo.num_minibatches):
                idx = perm[k * size:(k + 1) * size]
                out = self.loss(flat[idx])
                loss = out["loss_objective"] + out["loss_entropy"] + out["loss_bounds"]
                if "loss_critic" in out.keys():
                    loss = loss + out["loss_critic"]
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), ppo.max_grad_norm)
                self.optimizer.step()
                # Hora: the next epoch's KL is measured against this epoch's policy
                flat["loc"][idx] = out["loc"]
                flat["scale"][idx] = out["scale"]
                kls.append(out["kl"])
                for key in ("loss_objective", "loss_critic", "loss_bounds", "loss_entropy", "entropy", "kl_approx",
                            "clip_fraction", "explained_variance", "value_clip_fraction"):
                    if key in out.keys():
                        sums[key] = sums.get(key, 0.0) + float(out[key].detach().mean())
            kl = float(torch.stack(kls).mean())
            epoch_kls.append(kl)
            self.schedule.update(kl)
            self.schedule.apply(self.optimizer)
        self.model.eval()
        steps = ppo.epochs * ppo.num_minibatches
        stats = {k: v / steps for k, v in sums.items()}
        stats["kl"] = sum(epoch_kls) / len(epoch_kls)
        return stats

    def _row(self, batch, stats: dict, collect_s: float, update_s: float, physics_s: float) -> dict:
        n = batch.numel()
        nxt = batch["next"]
        terms = nxt["reward_terms"].reshape(-1, len(TERMS)).mean(0).tolist()
        ended = nxt["episode_ended"].reshape(-1)
        row = {
            "iteration": self.iteration, "frames": self.frames, "time_s": self._elapsed(),
            "reward/mean": float(nxt["reward"].mean()),
            **{f"reward/{t}": v for t, v in zip(TERMS, terms)},
            "episode/count": int(ended.sum()),
            "loss/objective": stats.get("loss_objective"), "loss/critic": stats.get("loss_critic"),
            "loss/bounds": stats.get("loss_bounds"), "loss/entropy": stats.get("loss_entropy"),
            "policy/kl": stats["kl"], "policy/kl_approx": stats.get("kl_approx"),
            "policy/entropy": stats.get("entropy"), "policy/log_std": float(self.model.log_std.detach().mean()),
            "policy/clip_fraction": stats.get("clip_fraction"),
            "policy/explained_variance": stats.get("explained_variance"),
            "policy/value_clip_fraction": stats.get("value_clip_fraction"),
            "schedule/lr": self.schedule.lr, "schedule/reward_alpha": float(self.env.reward_alpha),
            "schedule/env0_resets": int(self.env.env0_resets),
            "schedule/gravity_scale": float(self.env.gravity_scale),
            "perf/collect_fps": n / max(collect_s, 1e-9), "perf/update_fps": n / max(update_s, 1e-9),
            "perf/fps": n / max(collect_s + update_s, 1e-9),
            "perf/outside_physics_fraction": 1.0 - physics_s / max(collect_s + update_s, 1e-9),
            "env/blowups": int(self.env.blowups),
        }
        if ended.any():
            metrics = nxt["episode_metrics"].reshape(-1, len(EPISODE_METRICS))[ended].mean(0).tolist()
            row.update({f"episode/{m}": v for m, v in zip(EPISODE_METRICS, metrics)})
        return row

    def _elapsed(self) -> float:
        return self._elapsed_before + time.perf_counter() - self._t_start

    def run(self) -> dict:
        """Train until ``total_frames``; checkpoints every ``checkpoint_every`` iterations and at the end.

        A SIGTERM or Ctrl-C (``GracefulStop``) ends the run after the current iteration with a checkpoint
        there.  A run resumed from it starts with the full reset of a boundary, so it goes on as the
        uninterrupted run would with one more boundary at that iteration (exactly so when the stop falls
        on a ``checkpoint_every`` boundary)."""
        total = self.run_cfg.total_frames
        iterations = math.ceil(total / self.frames_per_batch)
        self._t_start = time.perf_counter()
        self.logger = TrainLogger(self.out_dir, total_frames=iterations * self.frames_per_batch,
                                  start_iteration=self.iteration, start_frames=self.frames,
                                  progress=self.run_cfg.progress, tensorboard=self.run_cfg.tensorboard,
                                  print_every=self.run_cfg.print_every)
        last = {}
        path = self.ckpt_dir / "last.pt"
        threads_before = torch.get_num_threads()
        if self.run_cfg.torch_threads is not None:
            torch.set_num_threads(int(self.run_cfg.torch_threads))
        try:
            with GracefulStop() as stop:
                while self.iteration < iterations:
                    last = self.iterate()
                    self.logger.log(last)
                    final = self.iteration >= iterations
                    if final or stop.requested or self.iteration % self.run_cfg.checkpoint_every == 0:
                        path = self._boundary(reset=not (final or stop.requested))
                    if stop.requested and not final:
                        print(f"[train_oracle] stopped by {stop.requested} at iteration {self.iteration} "
                              f"({self.frames} frames); checkpoint {path}; the same command resumes", flush=True)
                        break
        finally:
            torch.set_num_threads(threads_before)
            self.logger.close()
        return {"iterations": self.iteration, "frames": self.frames, "out_dir": str(self.out_dir),
                "stopped_by": stop.requested,
                "lineage_frames": self.frames + self.lineage["frames_before"],
                "checkpoint": str(path), "wall_s": time.perf_counter() - self._t_start, "last": last}

    def close(self) -> None:
        self.collector.shutdown(close_env=True, raise_on_error=False)


def batch_values(model: ActorCritic, batch) -> None:
    """Write ``state_value`` and ``("next", "state_value")`` [N, T, 1] into a collected batch.

    The next observation of step t is the observation of step t+1 unless the episode ended at t
    (the collector reset it) or t is the last step, so the trunk runs once per frame plus once per
    such step, instead of twice per frame (GAE's own value calls)."""
    obs = batch["observation"]
    values = model.value(obs.reshape(-1, obs.shape[-1])).reshape(*obs.shape[:-1], 1)
    next_values = torch.empty_like(values)
    next_values[:, :-1] = values[:, 1:]
    fresh = batch["next", "done"].reshape(values.shape[:-1]).clone()
    fresh[:, -1] = True
    next_obs = batch["next", "observation"][fresh]
    next_values[fresh] = model.value(next_obs)
    batch["state_value"] = values
    batch["next", "state_value"] = next_values


def _versions() -> dict:
    import torchrl

    return {"torch": str(torch.__version__), "torchrl": str(torchrl.__version__)}


def train(cfg) -> dict:
    """Train one oracle from a config mapping (see ``PPOTrainer``); returns the run summary."""
    trainer = PPOTrainer(cfg)
    try:
        return trainer.run()
    finally:
        trainer.close()
