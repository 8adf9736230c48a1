"""Rotation evaluation: policies x conditions x seeds, with the paper's metrics (DexNDM Sec. 4.1,
Appendix C; Tables 1, 4, 5).

A *condition* is (domain, object set, axis group, wrist orientation).  Axis groups:
``x``/``y``/``z`` (the +- pair), ``general`` (the 26 general axes), ``all``, a principal
axis (``+z``), ``diagonal`` (the real-world cubic-diagonal set (1,1,1), (1,0,1), (1,1,0),
(0,1,1)), and ``goal`` (goal-oriented mode: a random goal pose, the axis towards it; GO
Succ. counts final orientations within 0.1 pi of the goal).

Protocol per (policy, condition, seed): episodes run in rounds of ``num_envs``; a round
reseeds the env with (seed, round) and resets every env, and each env's *first* episode
is recorded when it ends (drop, blow-up or ``episode_steps``), so short failed episodes
are not over-represented.  Ended envs keep stepping unrecorded and are not reset, so
every policy sees the same objects, grasps, physics draws and disturbance forces for a
given seed (common random numbers: differences between policies are not sampling noise
of the conditions).  Per seed, a metric is averaged per object, then over objects ("first
averaged over all objects within each trial", Table 4); the report gives the mean and the
population std (ddof=0, as ``dexndm.sim.metrics.summarize``) of these per-seed values.

Metrics per episode (``dexndm.sim.metrics``): ``rot_r`` (RotR, sum of w.k), ``ttf`` (TTF,
normalised by the episode length), ``ttf_s`` (TTF in seconds, the real-world tables'
unit), ``rotp`` (RotP), ``rot_rad`` (Rot, radians about the axis), ``survival_angle``,
``go_success`` and ``length``/``blowup``.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from dexndm.eval.policies import Policy, load_policy, parse_policies
from dexndm.sim import orientations as ori
from dexndm.sim.metrics import EPISODE_METRICS

#: Per-episode metrics of the report (EPISODE_METRICS plus TTF in seconds).
METRICS: tuple[str, ...] = (*EPISODE_METRICS, "ttf_s")
#: The real-world cubic-diagonal axis set (paper Sec. 4.1), normalised in the env.
DIAGONAL_AXES: list[list[float]] = [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]
SPECIAL_AXES: tuple[str, ...] = ("diagonal", "goal")
#: Conditions of each paper table (in sim: Table 4's object sets map to our categories:
#: regular -> cylinders, small -> small_cylinders, irregular -> complex).
PROTOCOLS: dict[str, dict[str, list[str]]] = {
    "table1": {"object_sets": ["unseen"], "axes": ["x", "y", "z", "general", "goal"], "wrists": ["random"]},
    "table4": {"object_sets": ["cylinders", "small_cylinders", "complex"], "axes": ["x", "y", "z", "diagonal"],
               "wrists": ["palm_down"]},
    "table5": {"object_sets": ["cylinders"], "axes": ["z"], "wrists": list(ori.NAMED_ORIENTATIONS)},
}


@dataclass(frozen=True)
class Condition:
    """One evaluation setting; ``axes`` is an axis group name, ``wrist`` a wrist spec name."""

    domain: str
    object_set: str
    axes: str
    wrist: str

    def __post_init__(self) -> None:
        if self.axes not in SPECIAL_AXES:
            ori.axes_for(self.axes)                     # raises with the valid names
        ori.gravity_directions(self.wrist)

    @property
    def key(self) -> str:
        return f"{self.domain}/{self.object_set}/{self.axes}/{self.wrist}"

    def env_overrides(self) -> dict[str, Any]:
        """``EnvConfig`` fields this condition sets."""
        out: dict[str, Any] = {"domain": self.domain, "object_set": self.object_set, "wrist": self.wrist,
                               "goal_mode": self.axes == "goal"}
        out["axes"] = DIAGONAL_AXES if self.axes == "diagonal" else ("all" if self.axes == "goal" else self.axes)
        return out


def conditions(domains: Iterable[str], object_sets: Iterable[str], axes: Iterable[str],
               wrists: Iterable[str]) -> list[Condition]:
    """The cross product, domain-major (each validated)."""
    return [Condition(str(d), str(o), str(a), str(w))
            for d, o, a, w in itertools.product(domains, object_sets, axes, wrists)]


def protocol_lists(protocol: str | None, object_sets=None, axes=None, wrists=None) -> dict[str, list[str]]:
    """Object sets, axes and wrists of a paper protocol; any given list overrides it."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {sorted(PROTOCOLS)} or null with explicit "
                         "object_sets/axes/wrists")
    base = PROTOCOLS.get(protocol or "", {})
    out = {}
    for name, given in (("object_sets", object_sets), ("axes", axes), ("wrists", wrists)):
        value = list(given) if given is not None else list(base.get(name, []))
        if not value:
            raise ValueError(f"eval: no {name} (give {name}=[...] or a protocol: {sorted(PROTOCOLS)})")
        out[name] = [str(v) for v in value]
    return out


def round_seed(seed: int, round_index: int) -> int:
    """Env seed of round ``round_index`` of a seed (the same for every policy)."""
    return int(np.random.SeedSequence([int(seed), int(round_index)]).generate_state(1)[0])


def policy_env_requirements(policies: Mapping[str, Policy]) -> dict[str, Any]:
    """The ``EnvConfig`` fields the policies' observations fix (e.g. an oracle's privileged layout),
    merged; policies that need different values cannot share an env and are refused."""
    merged: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for name, policy in policies.items():
        for key, value in policy.env_requirements().items():
            if key in merged and merged[key] != value:
                raise ValueError(f"policies {owner[key]!r} and {name!r} need different env.{key} "
                                 f"({merged[key]!r} vs {value!r}); evaluate them in separate runs")
            merged.setdefault(key, value)
            owner.setdefault(key, name)
    return merged


def run_episodes(policy: Policy, env, episodes: int, seed: int) -> list[dict[str, Any]]:
    """``episodes`` recorded episodes of ``policy`` in ``env``: one dict per episode with every
    metric of ``METRICS`` (floats) and ``object`` (shape name), in env order within each round
    (the first episode of env 0, 1, ...), whichever ends first."""
    import torch

    n = int(env.batch_size[0])
    horizon = env.cfg.episode_steps * env.dt
    records: list[dict[str, Any]] = []
    r = 0
    while len(records) < episodes:
        env.set_seed(round_seed(seed, r), static_seed=True)
        td = env.reset()
        names = [env.sampler.shapes[int(k)].name for k in env.object_index]
        pending = np.zeros(n, dtype=bool)
        pending[:min(n, episodes - len(records))] = True
        this_round: dict[int, dict[str, Any]] = {}
        for _ in range(env.cfg.episode_steps + 1):      # every first episode ends by episode_steps
            if not pending.any():
                break
            with torch.no_grad():
                td = policy.step_input(td, env)
            td = env.step(td)["next"]
            ended = td["episode_ended"].reshape(n).numpy() & pending
            if ended.any():
                rows = td["episode_metrics"].numpy().astype(np.float64)
                for i in np.flatnonzero(ended):
                    rec = {m: float(rows[i, k]) for k, m in enumerate(EPISODE_METRICS)}
                    rec["ttf_s"] = rec["ttf"] * horizon
                    rec["object"] = names[i]
                    this_round[int(i)] = rec
                pending &= ~ended
        if pending.any():
            raise RuntimeError(f"{int(pending.sum())} episodes did not end within episode_steps "
                               f"({env.cfg.episode_steps}); the env's truncation is broken")
        records.extend(this_round[i] for i in sorted(this_round))
        r += 1
    return records


def seed_value(records: list[Mapping[str, Any]], metric: str) -> float:
    """A metric of one seed: per-object means, averaged over objects."""
    by_obj: dict[str, list[float]] = {}
    for rec in records:
        by_obj.setdefault(str(rec["object"]), []).append(float(rec[metric]))
    return float(np.mean([np.mean(v) for v in by_obj.values()]))


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """(mean, population std) of per-seed values."""
    arr = np.asarray(list(values), dtype=np.float64)
    return float(arr.mean()), float(arr.std())


def aggregate(per_seed_records: Mapping[int, list[Mapping[str, Any]]]) -> dict[str, Any]:
    """{per_seed: {seed: {metric: value}}, mean: {metric}, std: {metric}, episodes: {seed: n}}."""
    per_seed = {str(s): {m: seed_value(recs, m) for m in METRICS} for s, recs in per_seed_records.items()}
    out: dict[str, Any] = {"per_seed": per_seed, "episodes": {str(s): len(r) for s, r in per_seed_records.items()},
                           "mean": {}, "std": {}}
    for m in METRICS:
        out["mean"][m], out["std"][m] = mean_std(v[m] for v in per_seed.values())
    return out


def overall(results: list[Mapping[str, Any]], policy_names: Iterable[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Per policy and metric, the mean/std over seeds of the per-seed average over all its
    conditions: ``{policy: {metric: {mean, std}}}`` (what ``report.json`` of the pipeline holds)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in policy_names:
        rows = [r for r in results if r["policy"] == name]
        if not rows:
            continue
        seeds = sorted(set.intersection(*(set(r["per_seed"]) for r in rows)), key=int)
        out[name] = {}
        for m in METRICS:
            mean, std = mean_std(np.mean([r["per_seed"][s][m] for r in rows]) for s in seeds)
            out[name][m] = {"mean": mean, "std": std}
    return out


ProgressFn = Callable[[int, int, str], None]


def evaluate(policies: Any, *, domains: Iterable[str] = ("nominal",), object_sets: Iterable[str] | None = None,
             axes: Iterable[str] | None = None, wrists: Iterable[str] | None = None, protocol: str | None = None,
             seeds: Iterable[int] = (0, 1, 2), episodes: int = 16, num_envs: int = 16,
             env: Mapping[str, Any] | None = None, progress: ProgressFn | None = None,
             keep_episodes: bool = False) -> dict[str, Any]:
    """Evaluate named policies over the conditions; return plain data (JSON-ready).

    ``policies``: {name: spec} or a list of specs (``dexndm.eval.policies``).  Conditions:
    ``domains`` x object sets x axes x wrists, the last three from ``protocol`` (``table1``,
    ``table4``, ``table5``) unless given.  ``episodes`` per seed and condition, run on
    ``min(num_envs, episodes)`` envs; ``env``: further ``EnvConfig`` fields (e.g.
    ``episode_steps``, ``grasp_dir``).  ``progress(done, total, message)`` is called after
    each (policy, condition, seed).  Returns {config, policies, domains, results: [one per
    policy x condition: policy, domain, object_set, axes, wrist, per_seed, mean, std,
    episodes, ungraspable (the draws ``env.ungraspable=skip`` replaced), seconds], overall}.
    """
    from dexndm.sim import make_env
    from dexndm.sim.domain import load_domain

    specs = parse_policies(policies)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"eval: need one or more distinct seeds, got {seeds}")
    if episodes < 1 or num_envs < 1:
        raise ValueError(f"eval: need episodes >= 1 and num_envs >= 1, got {episodes}, {num_envs}")
    lists = protocol_lists(protocol, object_sets, axes, wrists)
    conds = conditions([str(d) for d in domains], lists["object_sets"], lists["axes"], lists["wrists"])
    env_base = dict(env or {})
    fixed = set(env_base) & {"domain", "object_set", "wrist", "axes", "goal_mode", "num_envs", "seed"}
    if fixed:
        raise ValueError(f"eval: env.{sorted(fixed)} are set by the conditions; use domains=/object_sets=/axes=/"
                         "wrists=/num_envs=/seeds= instead")
    from dexndm.sim.config import EnvConfig

    EnvConfig.from_dict(env_base)                                       # unknown keys: refuse before any work
    loaded = {name: load_policy(spec) for name, spec in specs.items()}   # fail early on a bad checkpoint
    env_base = {**policy_env_requirements(loaded), **env_base}           # what the user set wins (and is checked)
    domain_info = {str(d): load_domain(str(d)).to_dict() for d in dict.fromkeys(str(d) for d in domains)}

    results: list[dict[str, Any]] = []
    total, done = len(loaded) * len(conds) * len(seeds), 0
    for cond in conds:
        e = make_env(env_base, num_envs=min(num_envs, episodes), seed=seeds[0], **cond.env_overrides())
        try:
            for name, policy in loaded.items():
                policy.check_env(e)
                start, per_seed = time.perf_counter(), {}
                for s in seeds:
                    per_seed[s] = run_episodes(policy, e, episodes, s)
                    done += 1
                    if progress is not None:
                        rot = seed_value(per_seed[s], "rot_rad")
                        ttf = seed_value(per_seed[s], "ttf")
                        progress(done, total, f"{name} {cond.key} seed {s}: rot {rot:.2f} rad, TTF {ttf:.2f}")
                row = {"policy": name, **asdict(cond), **aggregate(per_seed),
                       "ungraspable": e.sampler.ungraspable, "seconds": time.perf_counter() - start}
                if keep_episodes:
                    row["episode_records"] = {str(s): recs for s, recs in per_seed.items()}
                results.append(row)
        finally:
            e.close()
            for policy in loaded.values():
                policy.close()
    config = {"policies": {n: str(s) for n, s in specs.items()}, "domains": list(domain_info),
              "protocol": protocol, **lists, "seeds": seeds, "episodes": int(episodes), "num_envs": int(num_envs),
              "env": env_base, "std": "population std (ddof=0) over seeds of per-seed object-averaged means"}
    return {"config": config, "metrics": list(METRICS), "policies": {n: p.meta for n, p in loaded.items()},
            "domains": domain_info, "results": results, "overall": overall(results, loaded)}
