"""Batched in-hand rotation as a TorchRL environment (DexNDM Sec. 3.1, 4.1, Appendix A.1, C).

N environments share one ``RolloutPhysics``: each control step (20 Hz) runs six
1/120 s physics steps for all of them in MuJoCo's threads, with PD control inside the
actuator model; observations, rewards, terminations and metrics are then computed with
array operations over the batch.  No Python loop runs over environments on the step
path (resets loop over the reset environments only, to copy their models).

Control: a_t = clip(a_{t-1} + action / 24, joint limits), action clipped to [-1, 1]; an
optional ``target_offset`` [N, 16] (rad) in the step input is added to what the hand is
sent but not to the chain a_t (the residual policy, ``dexndm.sim.control``).
The rotation reward and metrics use the object's mean angular velocity over the control
step (its orientation change divided by 1/20 s, as Hora does), not the instantaneous
velocity at the step's last physics step, which contact chatter makes noisy.

Pose actions (``pose_action_range`` r, rad; off by default).  The action u in [-1, 1]^16
is a hand pose around the episode's first targets g: the env commands the relative action
clip((g + r u - a_{t-1}) / scale, -1, 1), i.e. moves the targets towards g + r u by at
most 1/24 rad per step.  The command path, the chain a_t and every recorded action stay
the paper's (``relative_action`` in the output is what was applied); only the oracle's
exploration changes: Gaussian noise on a pose stays near the grasp, while noise on
relative steps is a random walk of the targets away from it.  MuJoCo Playground's LEAP
rotate-z task uses absolute targets around a home pose (without the rate limit).

Outputs per step: ``observation`` (privileged, oracle), ``policy_obs`` (deployable),
``relative_action`` (the relative action applied, [N, 16]), ``reward``,
``done``/``terminated``/``truncated``, ``reward_terms`` (each reward term, unweighted,
columns in ``reward.TERMS`` order) and ``episode_metrics`` (columns in
``metrics.EPISODE_METRICS`` order, valid where ``episode_ended``).

``stagger_episodes()`` cuts the current episodes at random lengths (legged_gym's
``init_at_random_ep_len``): after a full reset every env starts at step 0, and an oracle
that holds keeps them in lockstep, so each PPO batch would hold one phase of the episode
only.  A cut episode is truncated (done, value bootstrapped) without ``episode_ended``:
it is not a full episode and stays out of the metrics.
"""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from dexndm.hand import constants as hc
from dexndm.sim import orientations as ori
from dexndm.sim import quat
from dexndm.sim.config import EnvConfig
from dexndm.sim.control import HandController
from dexndm.sim.domain import load_domain
from dexndm.sim.metrics import EPISODE_METRICS, EpisodeTracker
from dexndm.sim.observations import DeployObservation, privileged_layout_of
from dexndm.sim.physics import RolloutPhysics
from dexndm.sim.reward import TERMS, follow, reward_terms, total_reward
from dexndm.sim.scene import SensorLayout, grasp_center
from dexndm.sim.task import TaskSampler

J = hc.NUM_JOINTS


def reset_ids(tensordict: TensorDictBase | None, n: int) -> np.ndarray:
    """Environments to reset: those flagged in ``tensordict["_reset"]``, or all of them."""
    if tensordict is not None and "_reset" in tensordict.keys():
        return np.flatnonzero(tensordict["_reset"].reshape(n).cpu().numpy())
    return np.arange(n)


class RotationEnv(EnvBase):
    """In-hand rotation of one object set by the LEAP hand; ``batch_size=[num_envs]``."""

    def __init__(self, cfg: EnvConfig | dict | None = None, device: str | torch.device = "cpu"):
        cfg = cfg if isinstance(cfg, EnvConfig) else EnvConfig.from_dict(cfg)
        n = cfg.num_envs
        super().__init__(device=device, batch_size=torch.Size([n]))
        self.cfg = cfg
        self.domain = load_domain(cfg.domain)
        self.rng = np.random.default_rng(cfg.seed)
        self.last_seed = cfg.seed
        self.sampler = TaskSampler(cfg, self.domain)
        self.hand = self.sampler.hand
        self.priv_layout = privileged_layout_of(cfg)
        self.center = grasp_center()
        self.substeps = self.domain.substeps
        self.dt = self.domain.control_dt

        self.control_steps = 0    # batched steps taken: the gravity curriculum's clock
        first = self.sampler.sample(self.rng, n, gravity_scale=self.gravity_scale)
        self.physics = RolloutPhysics(first.models, self.substeps, cfg.nthread)
        self.sensors = SensorLayout.from_model(first.models[0])
        self._episode = first
        self._alloc(n)
        self.blowups = 0          # physics blow-ups detected and reset, since construction
        self.env0_resets = 0      # resets of environment 0: the reward schedule's clock
        self.tracker = EpisodeTracker(n, cfg.episode_steps, self.dt)
        self._make_specs(n)
        self._reset_envs(np.arange(n), first)

    # ------------------------------------------------------------------ setup
    def _alloc(self, n: int) -> None:
        dr = self.cfg.randomization
        self.control = HandController(n, self.domain, self.cfg.action_scale, dr.joint_noise if dr.enabled else 0.0)
        self.q_init = np.zeros((n, J))
        self.start_pos = np.zeros((n, 3))                  # object position at reset
        self.shift = np.zeros((n, 3))                      # object position minus start_pos, last step
        self.obj_quat = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))  # object orientation after the last step
        self.q_hist = np.zeros((n, self.cfg.privileged_history, J))
        self.t_hist = np.zeros((n, self.cfg.privileged_history, J))
        self.deploy = DeployObservation(n, self.cfg.deploy_history)
        self.deploy_layout = self.deploy.layout
        self.axis = np.zeros((n, 3))
        self.gravity_dir = np.zeros((n, 3))
        self.wrist_quat = np.zeros((n, 4))
        self.goal = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))
        self.final_goal = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))
        self.force = np.zeros((n, 3))
        self.mass = np.zeros(n)                            # object mass drawn at reset (kg)
        self.object_index = np.zeros(n, dtype=np.int64)   # index into sampler.shapes
        self.object_scale = np.ones(n)                     # scale drawn at reset
        self._xfrc = np.zeros((n, self.substeps, self.physics.nbody, 6))
        self._priv = np.zeros((n, self.priv_layout.dim), dtype=np.float32)
        self._last_sensors = np.zeros((n, self.physics.nsensordata))
        self._last_qvel = np.zeros((n, J))
        self._terms = {t: np.zeros(n) for t in TERMS}
        self.episode_limit = np.full(n, self.cfg.episode_steps)   # truncation step of each current episode
        self.first_target = np.zeros((n, J))              # targets at reset: the centre of pose actions
        self.target_average = np.zeros((n, J))            # moving average of the targets (reward.drift)
        self.relative_action = np.zeros((n, J))            # the relative action applied at the last step

    def _make_specs(self, n: int) -> None:
        shape = (n,)
        self.observation_spec = Composite(
            observation=Unbounded((n, self.priv_layout.dim), dtype=torch.float32, device=self.device),
            policy_obs=Unbounded((n, self.deploy_layout.dim), dtype=torch.float32, device=self.device),
            reward_terms=Unbounded((n, len(TERMS)), dtype=torch.float32, device=self.device),
            episode_metrics=Unbounded((n, len(EPISODE_METRICS)), dtype=torch.float32, device=self.device),
            episode_ended=Categorical(2, (n, 1), dtype=torch.bool, device=self.device),
            relative_action=Bounded(-1.0, 1.0, (n, J), dtype=torch.float32, device=self.device),
            shape=shape, device=self.device,
        )
        self.action_spec = Bounded(-1.0, 1.0, (n, J), dtype=torch.float32, device=self.device)
        self.reward_spec = Unbounded((n, 1), dtype=torch.float32, device=self.device)
        flag = lambda: Categorical(2, (n, 1), dtype=torch.bool, device=self.device)  # noqa: E731
        self.done_spec = Composite(done=flag(), terminated=flag(), truncated=flag(), shape=shape, device=self.device)

    def _set_seed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)
        self.last_seed = seed        # what a twin env must be seeded with to draw the same episodes

    # ------------------------------------------------------------------ reset
    def _reset_envs(self, ids: np.ndarray, episode=None) -> None:
        episode = episode or self.sampler.sample(self.rng, len(ids), gravity_scale=self.gravity_scale)
        self.physics.set_models(ids, episode.models)
        qpos = np.tile(episode.models[0].qpos0, (len(ids), 1))
        q, target, pose = episode.grasp[:, :J], episode.grasp[:, J:2 * J], episode.grasp[:, 2 * J:]
        self.hand.set_joint_positions(qpos, q)
        oq = self.sampler.object_qpos
        qpos[:, oq:oq + 7] = pose
        self.start_pos[ids] = pose[:, :3]
        self.shift[ids] = 0.0
        self.obj_quat[ids] = pose[:, 3:]
        self.physics.set_state(ids, qpos, np.zeros((len(ids), self.physics.nv)))
        self._last_sensors[ids] = self.physics.forward(ids)
        self._last_qvel[ids] = 0.0
        self.control.reset(ids, target)
        self.first_target[ids] = target
        self.target_average[ids] = target
        self.relative_action[ids] = 0.0
        self.q_init[ids] = q
        q_meas = self.control.measure(q, self.rng)
        self.q_hist[ids] = q_meas[:, None]
        self.t_hist[ids] = target[:, None]
        self.deploy.reset(ids, q_meas, target)
        self.axis[ids] = episode.axis
        self.gravity_dir[ids] = episode.gravity_dir
        self.wrist_quat[ids] = ori.orientation_quat(episode.gravity_dir)
        self.mass[ids] = episode.object_mass
        self.object_index[ids] = episode.object_index
        self.object_scale[ids] = episode.scale
        self.force[ids] = 0.0
        obj_quat = pose[:, 3:]
        if self.cfg.goal_mode:
            self.final_goal[ids] = quat.random(self.rng, len(ids))
            self.axis[ids] = quat.rotation_axis(obj_quat, self.final_goal[ids])
            self.goal[ids] = self.final_goal[ids]
        else:
            self.goal[ids] = self._waypoint(obj_quat, self.axis[ids])
        self.tracker.reset(ids)
        self.episode_limit[ids] = self.cfg.episode_steps
        for t in self._terms.values():
            t[ids] = 0.0
        if 0 in ids:
            self.env0_resets += 1

    def _waypoint(self, obj_quat: np.ndarray, axis: np.ndarray) -> np.ndarray:
        """Goal orientation ``goal_ahead_deg`` further about the axis (world frame)."""
        turn = quat.from_axis_angle(axis, np.deg2rad(self.cfg.reward.goal_ahead_deg))
        return quat.normalize(quat.mul(turn, obj_quat))

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        n = self.batch_size[0]
        ids = reset_ids(tensordict, n)
        if len(ids):
            self._reset_envs(ids)
        self._build_obs()
        out = self._output(reward=None, terminated=np.zeros(n, bool), truncated=np.zeros(n, bool),
                           ended=np.zeros(n, bool), metrics=None)
        return out

    # ------------------------------------------------------------------ step
    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        n = self.batch_size[0]
        action = tensordict["action"].detach().to("cpu", torch.float64).numpy().reshape(n, J)
        offset = tensordict.get("target_offset", None)   # residual a_res (rad): sent, not chained
        if offset is not None:
            offset = offset.detach().to("cpu", torch.float64).numpy().reshape(n, J)
        action = np.clip(np.nan_to_num(action, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0)
        if self.cfg.pose_action_range is not None:
            action = self.pose_to_relative(action)
        self.relative_action = action
        ctrl = self.control.relative(action, offset)
        self.control_steps += 1

        dr = self.cfg.randomization
        if dr.enabled and dr.disturbance_scale > 0:
            resample = self.rng.random(n) < dr.disturbance_prob
            k = int(resample.sum())
            if k:
                self.force[resample] = self.rng.normal(size=(k, 3)) * (dr.disturbance_scale * self.mass[resample])[:, None]
        self._xfrc[:, :, self.sampler.object_body, :3] = self.force[:, None]

        states, sensors = self.physics.step(ctrl, self._xfrc)
        last = sensors[:, -1]
        qpos = self.physics.qpos
        q = self.hand.joint_positions(qpos)
        qdot_sub = self.hand.joint_velocities(self.physics.qvel_of(states))    # [N, S, 16]
        torque_sub = sensors[:, :, self.sensors["joint_torque"]]              # [N, S, 16]
        obj = last[:, self.sensors["object_state"]]
        linvel = obj[:, 7:10]
        # pose from the final state (sensors are computed before a physics step's integration)
        oq = self.sampler.object_qpos
        obj_pos, obj_quat = qpos[:, oq:oq + 3].copy(), quat.normalize(qpos[:, oq + 3:oq + 7])
        angvel = quat.rotation_vector(self.obj_quat, obj_quat) / self.dt   # mean over the control step

        blowup = self.physics.diverged | ~np.isfinite(last).all(axis=1)
        blowup |= np.linalg.norm(np.nan_to_num(linvel, nan=np.inf), axis=1) > self.cfg.max_object_speed
        if blowup.any():
            self.blowups += int(blowup.sum())
            for arr in (q, qdot_sub, torque_sub, obj_pos, obj_quat, linvel, angvel, last):
                arr[blowup] = 0.0
            obj_quat[blowup, 0] = 1.0
            obj_pos[blowup] = self.start_pos[blowup]
        self.obj_quat = obj_quat.copy()

        if self.cfg.goal_mode:
            self.axis = quat.rotation_axis(obj_quat, self.final_goal)
        goal_angle = quat.angle_between(obj_quat, self.goal)
        shift = self.shift = obj_pos - self.start_pos
        follow(self.target_average, self.control.target, self.cfg.reward.drift_steps)
        terms = reward_terms(self.cfg.reward, angvel=angvel, linvel=linvel, axis=self.axis, q=q,
                             q_init=self.q_init, torque=torque_sub, qdot=qdot_sub, goal_angle=goal_angle,
                             displacement=shift, tip_contacts=self._tip_contacts(last),
                             slow_offset=self.target_average - self.first_target)
        if not self.cfg.goal_mode:
            reached = goal_angle < np.deg2rad(self.cfg.reward.goal_threshold_deg)
            if reached.any():
                self.goal[reached] = self._waypoint(obj_quat[reached], self.axis[reached])
        self._terms = terms

        dropped = terms["position"] > self.cfg.drop_distance    # |shift|, computed once for the reward
        if self.cfg.max_sag is not None:        # sinking along gravity: into the palm, or out of the fingers
            dropped |= (shift * self.gravity_dir).sum(-1) > self.cfg.max_sag
        terminated = dropped & ~blowup
        reward = total_reward(self.cfg.reward, terms, self.env0_resets, dropped=terminated)
        reward[blowup] = 0.0
        self.tracker.step(angvel, self.axis, terms, goal_angle=quat.angle_between(obj_quat, self.final_goal))
        full_length = self.tracker.steps >= self.cfg.episode_steps
        truncated = (self.tracker.steps >= self.episode_limit) | blowup
        ended = terminated | full_length | blowup     # episodes cut by stagger_episodes() are not counted
        metrics = self.tracker.finish(ended, blowup, self.cfg.goal_success_angle) if ended.any() else None

        q_meas = self.control.measure(q, self.rng)
        target = self.control.target
        self.q_hist = np.roll(self.q_hist, -1, axis=1)
        self.q_hist[:, -1] = q_meas
        self.t_hist = np.roll(self.t_hist, -1, axis=1)
        self.t_hist[:, -1] = target
        self.deploy.push(q_meas, target)
        self._last_sensors = last
        self._last_qvel = qdot_sub[:, -1]
        self._obj = (obj_pos, obj_quat, linvel, angvel)
        self._build_obs()
        return self._output(reward=reward, terminated=terminated, truncated=truncated, ended=ended, metrics=metrics)

    def pose_to_relative(self, pose_action: np.ndarray) -> np.ndarray:
        """Relative actions [N, 16] that move the targets towards the pose ``pose_action`` [N, 16]
        in [-1, 1] stands for (``first_target + pose_action_range * pose_action``)."""
        wanted = self.first_target + self.cfg.pose_action_range * pose_action
        return np.clip((wanted - self.control.target) / self.cfg.action_scale, -1.0, 1.0)

    def stagger_episodes(self) -> np.ndarray:
        """Truncate each env's current episode after a random number of steps (uniform over
        1..episode_steps from now, drawn from the env's generator); returns those limits [N]."""
        n = self.batch_size[0]
        self.episode_limit = self.tracker.steps + self.rng.integers(1, self.cfg.episode_steps + 1, size=n)
        return self.episode_limit.copy()

    def _tip_contacts(self, last: np.ndarray) -> np.ndarray:
        """[N, 4] bool: each fingertip touches the object at the step's last physics step."""
        return last[:, self.sensors["tip_object_contact"]] > 0

    # ------------------------------------------------------------------ outputs
    def _build_obs(self) -> None:
        lay, s, n = self.priv_layout, self.sensors, self.batch_size[0]
        last = self._last_sensors
        obj = last[:, s["object_state"]].copy()
        obj[:, :3] -= self.center  # relative to the grasp centre: a fixed point of the hand
        contact = last[:, s["contact"]].reshape(n, len(hc.CONTACT_BODIES), 4)
        parts = {
            "joint_pos_history": self.q_hist.reshape(n, -1),
            "target_history": self.t_hist.reshape(n, -1),
            "joint_vel": self._last_qvel,
            "fingertip_state": last[:, s["tip_state"]],
            "object_state": obj,
            "goal_quat": self.goal,
            "joint_torque": last[:, s["joint_torque"]],
            "fingertip_wrench": last[:, s["tip_wrench"]],
            "contact_force": contact[:, :, 1:].reshape(n, -1),
            "contact_binary": (contact[:, :, 0] > 0).astype(np.float64),
            "wrist_quat": self.wrist_quat,
            "rotation_axis": self.axis,
        }
        if self.cfg.privileged_displacement:
            parts["object_displacement"] = self.shift   # what the drop test measured this step
        if self.cfg.pose_action_range is not None:
            parts["pose_center"] = self.first_target
        if self.cfg.privileged_grasp_pose:
            parts["grasp_joint_pos"] = self.q_init
        for name, value in parts.items():
            self._priv[:, lay.slice(name)] = value
        self.deploy.build(self.wrist_quat, self.axis)
        np.nan_to_num(self._priv, copy=False, nan=0.0, posinf=0.0, neginf=0.0)

    def _output(self, *, reward, terminated, truncated, ended, metrics) -> TensorDictBase:
        n = self.batch_size[0]
        col = lambda a, dt=torch.float32: torch.as_tensor(np.asarray(a).reshape(n, 1), dtype=dt)  # noqa: E731
        episode = np.zeros((n, len(EPISODE_METRICS)), dtype=np.float32)
        if metrics:
            episode[:] = np.stack([metrics[m] for m in EPISODE_METRICS], axis=1)
        out = {
            "observation": torch.from_numpy(self._priv.copy()),
            "policy_obs": torch.from_numpy(self.deploy.buffer.copy()),
            "reward_terms": torch.from_numpy(np.stack([self._terms[t] for t in TERMS], axis=1).astype(np.float32)),
            "episode_metrics": torch.from_numpy(episode),
            "episode_ended": col(ended, torch.bool),
            "relative_action": torch.from_numpy(self.relative_action.astype(np.float32)),
            "done": col(terminated | truncated, torch.bool),
            "terminated": col(terminated, torch.bool),
            "truncated": col(truncated, torch.bool),
        }
        if reward is not None:
            out["reward"] = col(reward)
        return TensorDict(out, batch_size=[n], device=self.device)

    # ------------------------------------------------------------------ misc
    @property
    def gravity_scale(self) -> float:
        """Gravity curriculum (``env.gravity_start``, ``env.gravity_ramp_steps``): the scale applied
        to gravity in environments reset now.  Low gravity lets early exploration move the
        fingers without dropping the object (Chen et al. 2021 use such a curriculum)."""
        ramp = self.cfg.gravity_ramp_steps
        if ramp <= 0:
            return 1.0
        frac = min(self.control_steps / ramp, 1.0)
        return self.cfg.gravity_start + (1.0 - self.cfg.gravity_start) * frac

    @property
    def reward_alpha(self) -> float:
        """Current value (0..1) of the paper's alpha_rot schedule."""
        return self.cfg.reward.schedule(self.env0_resets)

    def close(self, *, raise_if_closed: bool = True) -> None:
        self.physics.close()
        try:
            super().close(raise_if_closed=raise_if_closed)
        except TypeError:  # older torchrl signature
            super().close()
