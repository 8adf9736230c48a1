"""The ideal residual: what DexNDM's objective wins when its dynamics model is perfect (sim-to-sim only).

DexNDM trains a residual a_res so that the target hand, from its own history, ends a control step where the sim
hand would have (Sec. 3.3: min ||q_{t+1} - f(.., a_t + a_res)||, f the target hand's dynamics, learned).  When
the target "hand" is itself a simulator, that objective can be solved exactly at every step of an episode:

1. the source-domain physics (the sim) is stepped once from the target's full physics state (hand, object,
   contacts) under the base command a_t: q_ref;
2. the target physics is stepped from the same state under a_t + r for a few r (secant iteration per joint, r
   clipped to +-``bound``), and the r whose q_{t+1} comes closest to q_ref is kept;
3. the state is restored and the env steps with a_t + r.  The env's random numbers are not touched, so with
   ``dexndm eval``'s protocol every episode sees the same draws as direct transfer; a bound of 0 reproduces it.

It is privileged (it reads the simulator's state) and so a ceiling for the method, not a method: a gap it cannot
win back is beyond any residual trained through any dynamics model, and the distance between it and the trained
residual is what the learned model costs.  Spec: ``generalist:G.ckpt+ideal:BOUND[@SOURCE_DOMAIN]`` (source
``nominal`` by default).  Needs domains without latency (a command must act within its own step) and with models
of equal sizes (not backlash, which adds motor joints).
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch

from dexndm.eval.policies import GeneralistPolicy, PolicySpec
from dexndm.hand import constants as hc

#: First guess of dq_{t+1} / d(command) per joint, before the secant has two points.
GAIN_GUESS = 0.3


def secant_correction(predict: Callable[[np.ndarray], np.ndarray], q_ref: np.ndarray, a_t: np.ndarray, bound: float,
                      iterations: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The r within +-``bound`` (clipped to the joint limits with a_t) whose ``predict(a_t + r)`` comes closest to
    ``q_ref``: a secant iteration per joint.  ``predict`` maps commands [N, 16] to q_{t+1} [N, 16] (a simulator
    or a learned model).  Returns (r [N, 16], mean |error| at r = 0 [N], at the returned r [N]), rad."""
    lo, hi = hc.JOINT_LOWER, hc.JOINT_UPPER
    r, r_prev, e_prev = np.zeros_like(a_t), None, None
    best_r, best_err = r.copy(), np.full(len(a_t), np.inf)
    slope = np.full_like(a_t, GAIN_GUESS)
    gap = None
    for _ in range(max(iterations, 1)):
        e = q_ref - predict(np.clip(a_t + r, lo, hi))
        err = np.abs(e).mean(-1)
        gap = err if gap is None else gap                  # r = 0: the uncorrected gap
        better = err < best_err
        best_r[better], best_err[better] = r[better], err[better]
        if e_prev is not None:
            dr = r - r_prev
            ok = np.abs(dr) > 1e-6
            slope[ok] = np.clip((e_prev - e)[ok] / dr[ok], 0.05, 1.5)
        r_prev, e_prev = r.copy(), e
        r = np.clip(r + e / slope, -bound, bound)
    return best_r, gap, best_err


def check_domains(target: Any, source: Any, what: str = "the ideal residual") -> None:
    """Refuse (``ValueError``, with what to do) a target or source domain with latency: the one-step inverse needs
    a command to act within its own control step.  Domains are presets, files or ``Domain`` objects."""
    from dexndm.sim.domain import Domain, load_domain

    for name, dom in (("target", target), ("source", source)):
        dom = dom if isinstance(dom, Domain) else load_domain(dom)
        if dom.latency_control_steps or dom.latency_physics_steps:
            raise ValueError(f"{what}: the {name} domain {dom.name!r} has latency; the ideal residual needs a command "
                             "to act within its own control step (use it on domains without latency, or leave it out)")


class IdealResidualPolicy(GeneralistPolicy):
    """The generalist plus the residual a perfect one-step dynamics model would give; ``stats()`` reports the
    mean one-step |q_{t+1} - q_ref| before and after the correction over running episodes (rad)."""

    def __init__(self, spec: PolicySpec, iterations: int = 4):
        if spec.ideal is None:
            raise ValueError(f"{spec}: not an ideal-residual spec; write 'generalist:PATH.ckpt+ideal:BOUND'")
        super().__init__(PolicySpec("generalist", spec.checkpoint))
        self.spec = spec
        self.bound, self.source = float(spec.ideal), spec.ideal_source
        self.iterations = int(iterations)
        self.meta.update(spec=str(spec), ideal_bound=self.bound, ideal_source=self.source)
        self._twin = None
        self._synced: tuple | None = None
        self._ended: np.ndarray | None = None
        self.last_chain: np.ndarray | None = None    # a_t [N, 16] of the last step acted (rad)
        self.gap = self.left = 0.0
        self.count = 0

    # -- the source-domain twin ------------------------------------------------------------------
    def check_env(self, env) -> None:
        super().check_env(env)
        check_domains(env.domain, self.source, str(self.spec))
        self._twin_for(env)                 # refuses domains of different model sizes before any episode

    def _twin_for(self, env):
        if self._twin is None or self._twin[0] is not env:
            from dexndm.sim import make_env

            self.close()
            twin = make_env({**env.cfg.to_dict(), "domain": self.source})
            a, b = twin.physics, env.physics
            if (a.nq, a.nv, a.nu, a.nstate) != (b.nq, b.nv, b.nu, b.nstate):
                twin.close()
                raise ValueError(f"{self.spec}: the source domain {self.source!r} and the target domain "
                                 f"{env.domain.name!r} build models of different sizes (nq {a.nq} vs {b.nq}, nv {a.nv} "
                                 f"vs {b.nv}); the ideal residual copies states between them (backlash adds joints)")
            self._twin = (env, twin)
            self._synced = None
        return self._twin[1]

    def _sync(self, env):
        """The twin, reset to the target's current round (same seed, same draws: checked)."""
        twin = self._twin_for(env)
        key = (env.last_seed, env.env0_resets)
        if key != self._synced:
            if env.last_seed is None:
                raise RuntimeError("the ideal residual needs the env seeded before each round (env.set_seed)")
            twin.set_seed(env.last_seed, static_seed=True)
            twin.reset()
            for name in ("object_index", "object_scale", "mass"):
                if not np.allclose(getattr(twin, name), getattr(env, name)):
                    raise RuntimeError(f"{self.spec}: the source twin drew another {name} than the target env; "
                                       "the two domains' samplers consume random numbers differently")
            self._synced, self._ended = key, np.zeros(int(env.batch_size[0]), bool)
        return twin

    def close(self) -> None:
        if self._twin is not None:
            self._twin[1].close()
            self._twin = None

    # -- acting ----------------------------------------------------------------------------------
    @staticmethod
    def _step_q(env_like, controller, command: np.ndarray, state, warm, xfrc) -> np.ndarray:
        """q ``[N, 16]`` after one control step of ``env_like.physics`` from (state, warm) under ``command``."""
        physics = env_like.physics
        physics.state[:] = state
        physics.warmstart[:] = warm
        physics.step(controller.preview(command).copy(), xfrc)
        return env_like.hand.joint_positions(physics.qpos).copy()

    def reference_q(self, env, a_t: np.ndarray) -> np.ndarray:
        """Where the source (sim) hand would end this control step ``[N, 16]``: its physics stepped once from the
        target env's full state under the chain targets ``a_t [N, 16]``, after the command now in effect."""
        twin = self._sync(env)
        src_ctl = copy.copy(twin.control)                  # the source's controller with the target's command state
        src_ctl.queue, src_ctl.applied = env.control.queue.copy(), env.control.applied.copy()
        return self._step_q(twin, src_ctl, a_t, env.physics.state.copy(), env.physics.warmstart.copy(), env._xfrc)

    @contextmanager
    def target_trials(self, env) -> Iterator[Callable[[np.ndarray], np.ndarray]]:
        """Yields ``step(command [N, 16]) -> q [N, 16]``: the target's physics stepped once from its current state
        under ``command`` (after the command now in effect), as often as wanted; the state is restored on exit."""
        tgt = env.physics
        state, warm, diverged = tgt.state.copy(), tgt.warmstart.copy(), tgt.diverged.copy()
        try:
            yield lambda command: self._step_q(env, env.control, command, state, warm, env._xfrc)
        finally:
            tgt.state[:], tgt.warmstart[:], tgt.diverged = state, warm, diverged

    def solve(self, env, a_t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(r ``[N, 16]``, one-step gap before, after ``[N]``, rad) for chain targets ``a_t [N, 16]``; every
        physics state is left as it was."""
        q_ref = self.reference_q(env, a_t)
        with self.target_trials(env) as step:
            return secant_correction(step, q_ref, a_t, self.bound, self.iterations)

    @torch.no_grad()
    def act(self, td, env):
        action = self.base_action(td["policy_obs"])
        lo, hi = hc.JOINT_LOWER, hc.JOINT_UPPER
        a_t = self.last_chain = env.control.chain(action.double().numpy())
        r, gap, left = self.solve(env, a_t)
        self.record(td, gap, left)
        return action, torch.as_tensor(np.clip(a_t + r, lo, hi) - a_t, dtype=torch.float32)

    def record(self, td, gap: np.ndarray, left: np.ndarray) -> None:
        """Add one step's gaps ``[N]`` (rad) over the envs whose first episode of the round still runs."""
        if "episode_ended" in td.keys():
            self._ended |= td["episode_ended"].reshape(-1).numpy()
        running = ~self._ended
        if running.any():
            self.gap += float(np.asarray(gap)[running].mean())
            self.left += float(np.asarray(left)[running].mean())
            self.count += 1

    def stats(self) -> dict[str, Any]:
        """Mean one-step gap to the sim before and after the correction (mrad), over the steps acted so far."""
        n = max(self.count, 1)
        return {"one_step_gap_mrad": 1e3 * self.gap / n, "one_step_left_mrad": 1e3 * self.left / n,
                "steps": self.count}


class SentHistory(IdealResidualPolicy):
    """An ideal-residual policy that also keeps, per env, the last ``window`` joint positions ``qh [N, W, 16]`` and
    the commands actually sent ``ah [N, W-1, 16]`` (what a learned dynamics model reads); subclasses set
    ``last_sent`` each step.  The probes of experiments/pipeline_cylinders_tip and the sim-reference collection
    (``dexndm.collect.sim_reference``) build on it.  ``measured``: the joints as the encoders report them (what a
    deployed model reads), else the true ones (what the datasets record)."""

    def __init__(self, spec: PolicySpec, window: int, iterations: int = 4, measured: bool = True):
        super().__init__(spec, iterations)
        self.W = int(window)
        self.measured = bool(measured)
        self.qh = self.ah = self.last_sent = None

    def _histories(self, env, q_t: torch.Tensor) -> None:
        """q_{t-W+1..t} and the commands sent a_{t-W+1..t-1}; a fresh episode repeats its first q and hold target."""
        fresh = torch.as_tensor(env.tracker.steps == 0)
        if self.qh is None:
            fresh[:] = True
            self.qh, self.ah = q_t[:, None].repeat(1, self.W, 1), torch.zeros(len(q_t), self.W - 1, hc.NUM_JOINTS)
        else:
            self.qh = torch.cat((self.qh[:, 1:], q_t[:, None]), 1)
            self.ah = torch.cat((self.ah[:, 1:], self.last_sent[:, None]), 1)
        self.qh[fresh] = q_t[fresh, None]
        self.ah[fresh] = torch.as_tensor(env.control.target, dtype=torch.float32)[fresh, None]

    def commands(self, a_t: torch.Tensor) -> torch.Tensor:
        """The window's commands ``[N, W, 16]``: those sent before, then ``a_t [N, 16]``."""
        return torch.cat((self.ah, a_t[:, None]), 1)

    def predict(self, model, a_t: torch.Tensor) -> torch.Tensor:
        """A dynamics model's q_{t+1} ``[N, 16]`` from the window, ``a_t`` as the current command."""
        return model(self.qh, self.commands(a_t))

    def base_step(self, td, env) -> tuple[torch.Tensor, np.ndarray]:
        """Sync the source twin, advance the histories, and return (the base action [N, 16], its chain target
        a_t [N, 16] in rad, float64)."""
        self._sync(env)
        obs = td["policy_obs"]
        action = self.base_action(obs)
        q_t = self.last_q(obs, env) if self.measured else torch.as_tensor(env.hand.joint_positions(env.physics.qpos))
        self._histories(env, q_t.float())
        return action, env.control.chain(action.double().numpy())
