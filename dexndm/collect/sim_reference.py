"""Sim steps from other simulated hands' states: the data of the *proxy reference* (beyond the paper).

DexNDM's residual makes the target hand end each control step where the sim hand would have (Sec. 3.3).  Trained
on the target hand's own states (``dexndm pipeline residual.states=target``) it needs to know where the sim hand
would go *from those states*, and the sim-pretrained dynamics model, which has seen sim states only, misses that by
about the whole gap (experiments/pipeline_cylinders_tip/residual_diagnosis.md, section 9).  A real hand's states
cannot be loaded into the simulator, but other simulated hands' can: the base policy runs in a *proxy* domain
(softer, weaker, heavier hands; never the target), and at every step of a running episode the source simulator
is stepped once from the proxy's full physics state (hand, object, contacts) under the same command
(``dexndm.eval.ideal``).  Each step is written as one trajectory of the dataset schema: the proxy hand's last
``window`` joint positions (as the encoders report them, with the env's sensor noise, unless ``measured`` is
False: the true ones) and sent commands, then the sim's step (true joints) as the final state.  A dynamics model
fine-tuned on these windows says where the sim hand goes from off-nominal states, using nothing of the target hand.

Proxy domains need what the ideal residual needs: no latency, and models of the source's size (no backlash).
Runs in rounds of ``num_envs`` episodes (round k seeded ``seed + k``); an interrupted run into the same file
continues at the round it stopped in (every window records its round, so a cut round is run again and the windows
already written are skipped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dexndm.eval.ideal import SentHistory
from dexndm.eval.policies import PolicySpec

STRATEGY = "sim_reference"


class ReferenceRecorder(SentHistory):
    """The base policy acting unchanged; keeps (q window, command window, sim step, gravity) of every running env's
    steps that have a full history of their own."""

    def __init__(self, generalist: str, source_domain: str, window: int, measured: bool = True):
        super().__init__(PolicySpec("generalist", generalist, ideal=0.0, ideal_source=source_domain), window,
                         measured=measured)
        self.rows: list[tuple[np.ndarray, ...]] = []

    @torch.no_grad()
    def act(self, td, env):
        action, a_t = self.base_step(td, env)
        self.last_sent = torch.as_tensor(a_t).float()
        commands = self.commands(self.last_sent).numpy()                            # a_{t-W+1..t}
        q_ref = self.reference_q(env, a_t)
        if "episode_ended" in td.keys():
            self._ended |= td["episode_ended"].reshape(-1).numpy()
        for i in np.flatnonzero(~self._ended & (env.tracker.steps >= self.W - 1)):
            self.rows.append((self.qh[i].numpy().copy(), commands[i].copy(), q_ref[i].copy(),
                              env.gravity_dir[i].copy(), env.axis[i].copy()))
        return action, None


def _resume_point(path: Path) -> tuple[int, int]:
    """(round to start at, windows of it already written) for a file an earlier run left, (0, 0) for none."""
    from dexndm.data.reader import TrajectoryFile

    if not path.exists():
        return 0, 0
    with TrajectoryFile(path) as f:
        if not len(f):
            return 0, 0
        last = f.indices[-1]
        params = f.load(last, fields=["params"])["params"]
        written = len(f)
    k, before, rows = int(params["round"]), int(params["rows_before"]), int(params["round_rows"])
    done = written - before
    return (k + 1, 0) if done >= rows else (k, done)


def collect_sim_reference(*, out: str | Path, generalist: str, domain: Any, source_domain: Any = "nominal",
                          object_set: str, axes: str, wrist: str, episode_steps: int = 400, rounds: int = 3,
                          num_envs: int = 32, window: int = 10, seed: int = 2000, env: dict | None = None,
                          measured: bool = True, log=print) -> dict:
    """Write ``rounds`` x ``num_envs`` episodes of the generalist in ``domain``, one window per step labelled with
    the ``source_domain`` sim's step, to ``out``; return a summary (``out``, ``windows``, ``rounds``)."""
    from dexndm.data.writer import TrajectoryWriter
    from dexndm.eval.ideal import check_domains
    from dexndm.eval.rotation import Condition, policy_env_requirements, run_episodes
    from dexndm.sim import make_env
    from dexndm.sim.domain import load_domain

    if rounds < 1 or num_envs < 1 or window < 2:
        raise ValueError(f"sim_reference: need rounds >= 1, num_envs >= 1, window >= 2; got {rounds}, {num_envs}, "
                         f"{window}")
    check_domains(domain, source_domain, f"sim_reference data in {domain!r}")
    out = Path(out)
    start_round, skip = _resume_point(out)
    rec = ReferenceRecorder(generalist, str(source_domain), window, measured)
    env_cfg = {**policy_env_requirements({"g": rec}), **dict(env or {}), "episode_steps": int(episode_steps)}
    cond = Condition(str(domain), object_set, axes, wrist)
    dom = load_domain(domain)
    # what decides the windows of a round: a file written with other values is refused on resume
    source = {"kind": "collection", "strategy": STRATEGY, "generalist": str(generalist),
              "source_domain": str(source_domain), "num_envs": num_envs, "window": window, "seed": seed,
              "measured": bool(measured), "object_set": object_set, "axes": axes, "wrist": wrist,
              "env": dict(sorted(env_cfg.items()))}                       # (env holds episode_steps)
    config = {"strategy": STRATEGY, "rounds": rounds}
    with TrajectoryWriter(out, domain=dom.to_dict(), source=source, config=config,
                          control_rate_hz=1.0 / dom.control_dt) as writer:
        if start_round < rounds:
            e = make_env(env_cfg, num_envs=num_envs, seed=seed, **cond.env_overrides())
            try:
                rec.check_env(e)
                for k in range(start_round, rounds):
                    rec.qh, rec.rows = None, []
                    run_episodes(rec, e, num_envs, seed + k)
                    before = len(writer) - skip
                    for qh, ah, q_ref, gravity, axis in rec.rows[skip:]:
                        writer.append({"q": np.concatenate([qh, q_ref[None]]).astype(np.float32),
                                       "target": ah.astype(np.float32), "initial_target": ah[0].astype(np.float32),
                                       "axis": axis.astype(np.float32), "gravity_dir": gravity.astype(np.float32),
                                       "success": True, "params": {"strategy": STRATEGY, "round": k,
                                                                   "rows_before": before,
                                                                   "round_rows": len(rec.rows)}})
                    skip = 0
                    log(f"[sim_reference] {dom.name}: round {k + 1}/{rounds}, {len(writer)} windows")
            finally:
                rec.close()
                e.close()
        windows = len(writer)
    return {"out": str(out), "windows": windows, "rounds": rounds, "domain": dom.name}
