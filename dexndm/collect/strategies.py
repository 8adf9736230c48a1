"""Autonomous transition-data collection in a target domain (DexNDM Sec. 3.3, Appendix C).

Strategies (every episode is written, as soon as its batch ends, to a crash-safe
``TrajectoryWriter`` file of the dataset schema):

* ``chaos_box``: open-loop replay, inside the Chaos Box, of joint-target sequences that
  simulated policies produced for the same wrist orientation (``SourceSequences``); with
  probability ``noise_prob`` an episode gets i.i.d. Gaussian noise (``noise_std``) on every
  target.  The hand is reset to the sequence's ``initial_target``.
* ``free_hand``: the same replay with no balls (``num_balls=0``).
* ``task_aware``: the policy rotating objects in the target domain, successful episodes
  only (``dexndm.collect.task_aware``).
* ``base_waves`` ("Collecting via Base Waves"): per episode one joint follows a wave about
  its mid-range while the others hold mid-range, free hand.  Waves (t in seconds):
  sine ``s sin(2 w t)``, square ``A sign(sin(2 w t))``, noisy square (+ N(0, 0.01)), with
  s, A ~ U(0.5, 1.0), w ~ U(0.2, 0.5), in proportions 2:1:1; targets clamped to the limits.
  The PIP joints (2, 6, 10: MCP link to PIP link of index, middle, ring) are never
  actuated: the paper notes that moving them alone self-collides.

Recorded per episode: q [T+1, 16] (true joint positions), target [T, 16] (what was
commanded, clamped), initial_target (reset pose), gravity_dir, axis = [0, 0, 1] (a
placeholder: there is no rotation task; the schema needs a unit vector), success=True and
``params`` {"strategy", "noisy", "source_index" | "joint", "wave", ...}.  A run into an
existing file continues it: its episodes count toward ``episodes`` and the random stream
is seeded by (seed, existing count).  All envs step together, one ``env.step`` per step.
A physics blow-up cuts the episode before the blown-up step (params "blowup": true).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from dexndm.collect.progress import CollectProgress
from dexndm.collect.sources import SourceSequences
from dexndm.files import file_sha256
from dexndm.data.writer import TrajectoryWriter
from dexndm.hand import constants as hc
from dexndm.sim import orientations as ori
from dexndm.sim.domain import load_domain

J = hc.NUM_JOINTS
STRATEGIES: tuple[str, ...] = ("chaos_box", "free_hand", "base_waves", "task_aware")
#: PIP joints (index, middle, ring): actuating one alone self-collides (paper, Appendix C).
PIP_JOINTS: tuple[int, ...] = (2, 6, 10)
WAVE_JOINTS: tuple[int, ...] = tuple(j for j in range(J) if j not in PIP_JOINTS)
WAVES: tuple[str, ...] = ("sine", "square", "noisy_square")
WAVE_PROBS: tuple[float, ...] = (0.5, 0.25, 0.25)            # 2:1:1
AMPLITUDE = (0.5, 1.0)
OMEGA = (0.2, 0.5)
SQUARE_NOISE_STD = 0.01
MID_RANGE: np.ndarray = (hc.JOINT_LOWER + hc.JOINT_UPPER) / 2
PLACEHOLDER_AXIS = np.array([0.0, 0.0, 1.0], dtype=np.float32)   # no rotation task


@dataclass(frozen=True)
class WaveSpec:
    joint: int
    wave: str
    amplitude: float
    omega: float


def sample_wave_spec(rng: np.random.Generator) -> WaveSpec:
    """One base-wave episode: joint (never a PIP joint), waveform 2:1:1, amplitude, frequency."""
    joint = int(WAVE_JOINTS[rng.integers(len(WAVE_JOINTS))])
    wave = WAVES[int(rng.choice(len(WAVES), p=WAVE_PROBS))]
    return WaveSpec(joint, wave, float(rng.uniform(*AMPLITUDE)), float(rng.uniform(*OMEGA)))


def wave_targets(spec: WaveSpec, steps: int, dt: float, rng: np.random.Generator) -> np.ndarray:
    """Targets [steps, 16]: mid-range everywhere, the spec's joint offset by its wave (clamped)."""
    t = np.arange(steps) * dt
    phase = np.sin(2.0 * spec.omega * t)
    offset = spec.amplitude * (phase if spec.wave == "sine" else np.sign(phase))
    if spec.wave == "noisy_square":
        offset = offset + rng.normal(0.0, SQUARE_NOISE_STD, steps)
    target = np.tile(MID_RANGE, (steps, 1))
    target[:, spec.joint] += offset
    return hc.clamp_to_limits(target)


def noisy_replay(target: np.ndarray, noise_prob: float, noise_std: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """(targets [T, 16], noisy): with probability noise_prob, N(0, noise_std) on every target (clamped)."""
    noisy = bool(rng.random() < noise_prob)
    if noisy:
        target = hc.clamp_to_limits(target + rng.normal(0.0, noise_std, target.shape))
    return target, noisy


def _single_gravity(wrist: Any) -> np.ndarray:
    g = ori.gravity_directions(wrist)
    if g is None or len(g) != 1:
        raise ValueError(f"replay strategies need one wrist orientation (a name or a 3-vector) to match source "
                         f"sequences, got {wrist!r}; run once per orientation")
    return g[0]


def collect(strategy: str, *, out: str | Path, episodes: int, num_envs: int, domain: Any = "nominal",
            source_file: str | Path | None = None, wrist: Any = "palm_down", episode_steps: int = 400,
            noise_prob: float = 0.5, noise_std: float = 0.01, seed: int = 0, num_balls: int = 60,
            progress: Any = "auto", **task: Any) -> dict:
    """Collect until ``out`` holds ``episodes`` episodes of ``strategy``; return a summary dict.

    ``task_aware`` takes its own keywords (``policy``, ``object_set``, ``axes``, ``object_pose``,
    ``env``, ``max_attempts``; see ``collect_task_aware``) and ignores the replay ones.
    """
    from dexndm.sim import make_chaos_box

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {STRATEGIES}")
    if strategy == "task_aware":
        from dexndm.collect.task_aware import collect_task_aware

        return collect_task_aware(out=out, episodes=episodes, num_envs=num_envs, domain=domain, wrist=wrist,
                                  episode_steps=episode_steps, seed=seed, progress=progress, **task)
    if task:
        raise ValueError(f"strategy {strategy!r} does not take {sorted(task)} (task_aware options)")
    if episodes < 0 or num_envs < 1 or episode_steps < 1:
        raise ValueError("need episodes >= 0, num_envs >= 1, episode_steps >= 1")
    replay = strategy != "base_waves"
    if replay and source_file is None:
        raise ValueError(f"strategy {strategy!r} replays sim rollouts: give source_file")
    balls = num_balls if strategy == "chaos_box" else 0
    dom = load_domain(domain)
    dt = dom.control_dt
    source = {"kind": "collection", "strategy": strategy,
              "source_file_sha256": file_sha256(source_file) if replay else None}
    config = {"strategy": strategy, "num_envs": num_envs, "wrist": wrist if isinstance(wrist, str) else list(wrist),
              "episode_steps": episode_steps, "noise_prob": noise_prob, "noise_std": noise_std, "seed": seed,
              "num_balls": balls, "source_file": str(source_file) if replay else None}
    sources = SourceSequences(source_file, _single_gravity(wrist)) if replay else None
    summary = {"out": str(out), "strategy": strategy, "written": 0, "blowups": 0,
               "source_matched_wrist": sources.matched if sources else None}
    try:
        with TrajectoryWriter(out, domain=dom.to_dict(), source=source, config=config,
                              control_rate_hz=1.0 / dt) as writer:
            existing = len(writer)
            summary["existing"] = existing
            rng = np.random.default_rng([seed, existing])
            if existing < episodes:
                env = make_chaos_box(num_envs=num_envs, domain=domain, wrist=wrist, num_balls=balls,
                                     episode_steps=episode_steps + 1,   # never truncates: truncated = blow-up
                                     seed=int(rng.integers(2 ** 31)))
                bar = CollectProgress(strategy, episodes, existing, progress)
                try:
                    while len(writer) < episodes:
                        _run_batch(env, writer, strategy, min(num_envs, episodes - len(writer)), sources,
                                   episode_steps, noise_prob, noise_std, dt, rng, summary)
                        bar.update(len(writer), blowups=summary["blowups"])
                finally:
                    bar.close()
                    env.close()
            summary["episodes"] = len(writer)
    finally:
        if sources is not None:
            sources.close()
    return summary


def _run_batch(env, writer: TrajectoryWriter, strategy: str, count: int, sources: SourceSequences | None,
               episode_steps: int, noise_prob: float, noise_std: float, dt: float,
               rng: np.random.Generator, summary: dict) -> None:
    """Run ``count`` episodes on the first envs of the batch (the rest idle) and write them."""
    n = env.batch_size[0]
    plans, reset = [], np.tile(hc.CANONICAL_POSE, (n, 1))
    for k in range(count):
        params: dict[str, Any] = {"strategy": strategy}
        if sources is not None:
            seq = sources.sample(rng)
            target, noisy = noisy_replay(seq.target[:episode_steps], noise_prob, noise_std, rng)
            reset[k] = seq.initial_target
            params.update(noisy=noisy, source_index=seq.index, noise_std=noise_std if noisy else 0.0)
        else:
            spec = sample_wave_spec(rng)
            target = wave_targets(spec, episode_steps, dt, rng)
            reset[k] = MID_RANGE
            params.update(asdict(spec), noisy=spec.wave == "noisy_square")
        params["num_balls"] = env.cfg.num_balls
        plans.append((target, params))
    T = max(len(p[0]) for p in plans)
    targets = np.tile(reset[:, None, :], (1, T, 1))
    for k, (target, _) in enumerate(plans):
        targets[k, :len(target)] = target
        targets[k, len(target):] = target[-1]                     # hold the last target (not recorded)
    td = env.reset(TensorDict({"_reset": torch.ones(n, 1, dtype=torch.bool),
                               "reset_q": torch.as_tensor(reset, dtype=torch.float32)}, batch_size=[n]))
    gravity = td["gravity_dir"].numpy().copy()
    q = np.zeros((n, T + 1, J))
    q[:, 0] = td["joint_pos"].numpy()
    blown = np.full(n, T)                                         # first blown-up step per env (T: none)
    for t in range(T):
        td.set("action", torch.as_tensor(targets[:, t], dtype=torch.float32))
        td = env.step(td)["next"]
        q[:, t + 1] = td["joint_pos"].numpy()
        hit = td["truncated"].numpy().reshape(n) & (blown == T)
        blown[hit] = t
    for k, (target, params) in enumerate(plans):
        length = min(len(target), int(blown[k]))
        if length < len(target):
            summary["blowups"] += 1
            params["blowup"] = True
        if length < 1:
            continue
        writer.append({
            "q": q[k, :length + 1].astype(np.float32), "target": target[:length].astype(np.float32),
            "initial_target": reset[k].astype(np.float32), "axis": PLACEHOLDER_AXIS,
            "gravity_dir": gravity[k].astype(np.float32), "success": True, "params": params,
        })
        summary["written"] += 1
