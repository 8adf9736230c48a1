"""Batched MuJoCo physics: N models advanced by MuJoCo's own thread pool.

``mujoco.rollout`` takes the full physics state of every environment in, runs the
substeps of one control step in C on ``nthread`` threads, and hands states and sensor
values out; no Python runs between physics steps.  This is the CPU backend behind the
``PhysicsBackend`` interface; a GPU-batched backend (MuJoCo Warp, Isaac Gym) provides
the same four methods over device arrays.

Warm start: rollout does not hand ``qacc_warmstart`` out, so the solver's warm start for
the next control step is estimated from the last two substeps' velocities
(qacc ~ (v_S - v_{S-1}) / dt); a cold start there costs the solver many iterations.
"""

from __future__ import annotations

import time
from typing import Protocol, Sequence

import mujoco
import numpy as np
from mujoco import rollout

FULLPHYSICS = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)
CONTROL_SPEC = int(mujoco.mjtState.mjSTATE_CTRL) | int(mujoco.mjtState.mjSTATE_XFRC_APPLIED)


class PhysicsBackend(Protocol):
    """What the environments need from a batched simulator."""

    num_envs: int
    substeps: int
    diverged: np.ndarray  # [N] bool: the last step went unstable (the env resets it)
    step_seconds: float   # wall time spent in step() since construction (what training logs as physics)

    def set_models(self, env_ids: np.ndarray, models: Sequence[mujoco.MjModel]) -> None: ...
    def set_state(self, env_ids: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None: ...
    def step(self, ctrl: np.ndarray, xfrc: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]: ...
    def forward(self, env_ids: np.ndarray) -> np.ndarray: ...


class RolloutPhysics:
    """CPU backend on ``mujoco.rollout.Rollout`` with a persistent thread pool.

    Arrays: ``state`` [N, nstate] full physics (time, qpos, qvel, act); ``step`` takes
    ctrl [N, substeps, nu] and optional xfrc [N, substeps, nbody, 6] and returns the
    substep states [N, substeps, nstate] and sensordata [N, substeps, nsensordata]
    (views into reused buffers: copy what must outlive the next step).
    """

    def __init__(self, models: Sequence[mujoco.MjModel], substeps: int, nthread: int = 1):
        self.models = list(models)
        self.num_envs = len(self.models)
        self.substeps = int(substeps)
        self.nthread = max(int(nthread), 1)
        m = self.models[0]
        self.nq, self.nv, self.nu, self.nbody = m.nq, m.nv, m.nu, m.nbody
        self.nstate = mujoco.mj_stateSize(m, FULLPHYSICS)
        self.ncontrol = mujoco.mj_stateSize(m, CONTROL_SPEC)
        self.nsensordata = m.nsensordata
        for other in self.models[1:]:
            self._check_compatible(other)
        self.state = np.zeros((self.num_envs, self.nstate))
        self.warmstart = np.zeros((self.num_envs, self.nv))
        self.diverged = np.zeros(self.num_envs, dtype=bool)  # per env: the last step blew up
        self.step_seconds = 0.0
        self._dt = np.array([mm.opt.timestep for mm in self.models])[:, None]
        self._control = np.zeros((self.num_envs, self.substeps, self.ncontrol))
        self._states = np.empty((self.num_envs, self.substeps, self.nstate))
        self._sensors = np.empty((self.num_envs, self.substeps, self.nsensordata))
        self._datas = [mujoco.MjData(m) for _ in range(self.nthread)]
        self._scratch = mujoco.MjData(m)
        self._pool = rollout.Rollout(nthread=self.nthread if self.nthread > 1 else 0)
        for i, model in enumerate(self.models):
            self._scratch_reset(model)
            self.state[i] = self._get_state(model)

    # -- state layout ---------------------------------------------------------------
    @property
    def qpos(self) -> np.ndarray:
        return self.state[:, 1:1 + self.nq]

    @property
    def qvel(self) -> np.ndarray:
        return self.state[:, 1 + self.nq:1 + self.nq + self.nv]

    def qpos_of(self, states: np.ndarray) -> np.ndarray:
        return states[..., 1:1 + self.nq]

    def qvel_of(self, states: np.ndarray) -> np.ndarray:
        return states[..., 1 + self.nq:1 + self.nq + self.nv]

    def _check_compatible(self, model: mujoco.MjModel) -> None:
        ref = self.models[0]
        for attr in ("nq", "nv", "nu", "nbody", "ngeom", "nsensordata", "na"):
            if getattr(model, attr) != getattr(ref, attr):
                raise ValueError(f"models in one batch must have equal sizes; {attr} differs "
                                 f"({getattr(model, attr)} vs {getattr(ref, attr)})")

    def _scratch_reset(self, model: mujoco.MjModel) -> None:
        mujoco.mj_resetData(model, self._scratch)

    def _get_state(self, model: mujoco.MjModel) -> np.ndarray:
        out = np.empty(self.nstate)
        mujoco.mj_getState(model, self._scratch, out, FULLPHYSICS)
        return out

    # -- backend interface ----------------------------------------------------------
    def set_models(self, env_ids: np.ndarray, models: Sequence[mujoco.MjModel]) -> None:
        for i, model in zip(np.asarray(env_ids).tolist(), models):
            self._check_compatible(model)
            self.models[i] = model
            self._dt[i] = model.opt.timestep

    def set_state(self, env_ids: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Reset the listed environments to (qpos, qvel) at time 0, actuators at rest."""
        env_ids = np.asarray(env_ids)
        self.state[env_ids] = 0.0
        self.state[env_ids, 1:1 + self.nq] = qpos
        self.state[env_ids, 1 + self.nq:1 + self.nq + self.nv] = qvel
        self.warmstart[env_ids] = 0.0

    def step(self, ctrl: np.ndarray, xfrc: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        start = time.perf_counter()
        try:
            return self._step(ctrl, xfrc)
        finally:
            self.step_seconds += time.perf_counter() - start

    def _step(self, ctrl: np.ndarray, xfrc: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        self._control[..., :self.nu] = ctrl
        if xfrc is not None:
            self._control[..., self.nu:] = xfrc.reshape(self.num_envs, self.substeps, -1)
        else:
            self._control[..., self.nu:] = 0.0
        self._pool.rollout(
            self.models, self._datas, self.state, self._control,
            control_spec=CONTROL_SPEC, skip_checks=True, nstep=self.substeps,
            initial_warmstart=self.warmstart, state=self._states, sensordata=self._sensors,
        )
        expected = self.state[:, 0] + self.substeps * self._dt[:, 0]
        self.state[:] = self._states[:, -1]
        # MuJoCo resets an instance whose state went bad (and restarts its clock): catch it.
        self.diverged = ~np.isfinite(self.state).all(axis=1) | (np.abs(self.state[:, 0] - expected) > 0.5 * self._dt[:, 0])
        if self.substeps > 1:
            vel = self._states[:, -2:, 1 + self.nq:1 + self.nq + self.nv]
            np.divide(vel[:, 1] - vel[:, 0], self._dt, out=self.warmstart)
            np.nan_to_num(self.warmstart, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return self._states, self._sensors

    def forward(self, env_ids: np.ndarray) -> np.ndarray:
        """Sensor values [len(env_ids), nsensordata] at the current state (no time passes).

        Runs on the calling thread, one environment at a time: used on resets only.
        """
        out = np.empty((len(env_ids), self.nsensordata))
        for k, i in enumerate(np.asarray(env_ids).tolist()):
            model = self.models[i]
            mujoco.mj_setState(model, self._scratch, self.state[i], FULLPHYSICS)
            mujoco.mj_forward(model, self._scratch)
            out[k] = self._scratch.sensordata
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            self.close()
        except Exception:
            pass
