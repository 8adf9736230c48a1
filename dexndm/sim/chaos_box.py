"""The Chaos Box (DexNDM Sec. 3.3 "Autonomous Data Collection", Appendix C "Real-World Data
Collection Setup"): the hand sits in a container of soft, light balls and replays joint targets
rolled out by simulated policies, open loop; the shifting balls load it with rich random forces.

* ``build_chaos_box_model``: hand + six static walls + ``num_balls`` free spheres (radius and
  mass drawn per ball), gravity along the wrist orientation.  Walls collide with balls only
  (contype bits), so they may pass through the static palm like the open top of the real box.
  By default the floor sits just beyond the hand's lowest point along gravity; balls are
  deposited lowest first without overlap, then settle while the hand holds its pose.
* ``ChaosBoxEnv``: batched TorchRL environment over ``RolloutPhysics``; action = absolute
  joint targets (open-loop replay) or relative actions; observations: deployable
  ``policy_obs``, true and measured joint states, torques, hand contact forces.  Reward is
  zero: the product is the transition data.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np
import torch
from mujoco import rollout
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from dexndm.hand import constants as hc
from dexndm.hand.model import COLLISION_CONTYPE, HandIndex, add_hand
from dexndm.sim import orientations as ori
from dexndm.sim.control import ACTION_SCALE, HandController
from dexndm.sim.domain import Domain, load_domain
from dexndm.sim.env import reset_ids
from dexndm.sim.observations import DeployObservation
from dexndm.sim.physics import RolloutPhysics
from dexndm.sim.scene import SensorLayout, add_hand_sensors, kinematic_hand, new_spec, grasp_center
from dexndm.typed_config import from_mapping

J = hc.NUM_JOINTS
WALL_BIT = 2                          # contype/conaffinity bit of walls and balls, not of the hand
BALL_BITS = COLLISION_CONTYPE | WALL_BIT
WALL_HALF_THICKNESS = 0.02            # m; a ball cannot cross a wall in one physics step
PLACEMENT_GAP = 0.002                 # m between deposited balls, the walls and the hand
#: Largest expected solid fraction of the box the balls may take (a config check; deposition
#: around the hand, which fills about a third of the default box, jams near 0.25-0.29).
MAX_PACKING = 0.35
SETTLE_CHUNK = 12                     # physics steps per settling rollout call (bounds its buffers)
CTRL_SPEC = int(mujoco.mjtState.mjSTATE_CTRL)
LIMITS = (hc.JOINT_LOWER, hc.JOINT_UPPER)


@dataclass
class ChaosBoxConfig:
    """One batch of Chaos Boxes (lengths in metres, masses in kg, hand frame)."""

    num_envs: int = 64
    nthread: int = 2
    domain: Any = "nominal"                      # preset name, path or mapping (load_domain)
    wrist: Any = "random"                        # as orientations.gravity_directions
    num_balls: int = 60
    ball_radius: tuple[float, float] = (0.02, 0.03)
    ball_mass: tuple[float, float] = (0.002, 0.01)
    ball_softness: float = 0.03                  # solref time constant (hand geoms 0.02; contacts mix)
    ball_dampratio: float = 1.0
    ball_solimp: tuple[float, ...] = (0.8, 0.95, 0.005, 0.5, 2.0)
    ball_friction: float = 0.5
    ball_damping: float = 2e-5                   # free-joint damping: air drag and rolling resistance
    box_size: tuple[float, float, float] = (0.15, 0.13, 0.13)   # inner half-extents
    box_offset: float | None = None              # box centre = grasp centre + box_offset * gravity_dir;
    floor_gap: float = 0.02                      # None: floor this far beyond the hand's lowest point
    settle_steps: int = 60                       # physics steps of settling after each reset (0.5 s)
    max_ball_speed: float = 10.0                 # m/s; faster = physics blow-up, the env is truncated
    action_mode: str = "absolute"                # absolute joint targets | relative (a_{t-1} + scale * a)
    action_scale: float = ACTION_SCALE
    axis: tuple[float, float, float] | None = None   # rotation axis in policy_obs (None: zeros)
    deploy_history: int = 10
    episode_steps: int = 400
    seed: int = 0

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"chaos_box.{msg}")

        for name in ("ball_radius", "ball_mass"):
            lo, hi = getattr(self, name)
            need(0 < lo <= hi < math.inf, f"{name}: need 0 < low <= high, got {(lo, hi)}")
        for name in ("ball_softness", "ball_dampratio", "ball_friction", "max_ball_speed"):
            need(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        need(self.num_envs >= 1 and self.nthread >= 1, "num_envs and nthread must be >= 1")
        need(min(self.num_balls, self.ball_damping, self.floor_gap) >= 0, "num_balls, ball_damping, floor_gap: >= 0")
        need(self.settle_steps >= 0 and self.deploy_history >= 1 and self.episode_steps >= 1,
             "settle_steps must be >= 0, deploy_history and episode_steps >= 1")
        need(len(self.ball_solimp) in (3, 5), f"ball_solimp needs 3 or 5 values, got {self.ball_solimp}")
        need(len(self.box_size) == 3 and min(self.box_size) > 0, f"box_size: need 3 values > 0, got {self.box_size}")
        need(self.box_offset is None or abs(self.box_offset) < min(self.box_size),
             f"box_offset={self.box_offset}: |offset| must be < the smallest half-extent or the hand is outside")
        need(self.ball_radius[1] + PLACEMENT_GAP < min(self.box_size),
             f"ball_radius: balls of radius {self.ball_radius[1]} do not fit in half-extents {self.box_size}")
        lo, hi = self.ball_radius
        mean_r3 = (hi ** 4 - lo ** 4) / (4 * (hi - lo)) if hi > lo else hi ** 3
        volume, box = self.num_balls * 4 / 3 * math.pi * mean_r3, 8 * math.prod(self.box_size)
        need(volume <= MAX_PACKING * box,
             f"num_balls: {self.num_balls} balls of radius {self.ball_radius} m take {volume:.2e} m^3 = "
             f"{volume / box:.0%} of the box volume {box:.2e} m^3; at most {MAX_PACKING:.0%} can be packed "
             "around the hand: enlarge box_size, or use fewer or smaller balls")
        need(self.action_mode in ("absolute", "relative"), f"action_mode: absolute|relative, not {self.action_mode!r}")
        need(self.axis is None or (len(self.axis) == 3 and np.linalg.norm(self.axis) > 1e-9),
             f"axis must be None or a non-zero 3-vector, got {self.axis}")
        try:
            ori.gravity_directions(self.wrist)
        except ValueError as exc:
            raise ValueError(f"chaos_box.wrist: {exc}") from exc

    @classmethod
    def from_dict(cls, data: dict | None) -> "ChaosBoxConfig":
        return from_mapping(cls, data, "chaos_box", _TUPLE_KEYS)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_TUPLE_KEYS = frozenset({"ball_radius", "ball_mass", "ball_solimp", "box_size", "axis"})


@functools.lru_cache(maxsize=1)
def _hand_corners() -> np.ndarray:
    """Corners [8 * ngeom, 3] of the hand's collision boxes at the canonical pose (hand frame)."""
    model, data = kinematic_hand()
    HandIndex.from_model(model).set_joint_positions(data.qpos, hc.CANONICAL_POSE)
    mujoco.mj_kinematics(model, data)
    signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T          # [8, 3]
    local = signs[None] * model.geom_size[:, None, :]                                    # [G, 8, 3]
    return (data.geom_xpos[:, None] + np.einsum("gij,gkj->gki", data.geom_xmat.reshape(-1, 3, 3), local)).reshape(-1, 3)


def box_center(cfg: ChaosBoxConfig, gravity_dir: np.ndarray) -> np.ndarray:
    """Centre of the box ([..., 3], hand frame) for unit gravity directions [..., 3].

    With ``box_offset=None`` the box slides along gravity until its lowest point (face, edge
    or corner) is ``floor_gap`` beyond the hand's lowest point: the hand is dipped to the
    bottom of the box and the balls pile up around it, whatever the wrist orientation.
    """
    g, center = np.asarray(gravity_dir, dtype=float), grasp_center()
    if cfg.box_offset is not None:
        return center + cfg.box_offset * g
    lowest = (_hand_corners() @ g.reshape(-1, 3).T).max(axis=0).reshape(g.shape[:-1])    # hand's extent along g
    reach = (np.abs(g) * np.asarray(cfg.box_size)).sum(axis=-1)                          # box half-width along g
    return center + (lowest + cfg.floor_gap - reach - g @ center)[..., None] * g


def _obb_distance(points: np.ndarray, pos: np.ndarray, mat: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Distance from points [C, 3] to the nearest of G oriented boxes (pos [G,3], mat [G,3,3], half [G,3])."""
    rot = mat.transpose(1, 0, 2).reshape(3, -1)                                  # p @ R_g for every g at once
    local = (points @ rot - np.einsum("gj,gji->gi", pos, mat).reshape(-1)).reshape(len(points), -1, 3)
    outside = np.maximum(np.abs(local) - half[None], 0.0)
    return np.sqrt((outside * outside).sum(axis=-1).min(axis=1))


def place_balls(model: mujoco.MjModel, hand_q: np.ndarray, center: np.ndarray, half: np.ndarray,
                gravity_dir: np.ndarray, radii: np.ndarray, rng: np.random.Generator,
                columns: int = 160, step: float = 0.005) -> np.ndarray:
    """Non-overlapping ball centres [B, 3] by deposition: on ``columns`` random lines along
    gravity, a free point whose next point down is blocked (floor, hand, a placed ball) is a
    resting point; each ball (random order) takes the lowest one, so the pile starts nearly
    settled.  Sparse lines can jam early: the deposition is retried twice, each time denser."""
    data = mujoco.MjData(model)
    HandIndex.from_model(model).set_joint_positions(data.qpos, hand_q)
    mujoco.mj_kinematics(model, data)
    hand = np.flatnonzero((model.geom_contype == COLLISION_CONTYPE) & (model.geom_type == mujoco.mjtGeom.mjGEOM_BOX))
    boxes = data.geom_xpos[hand], data.geom_xmat[hand].reshape(-1, 3, 3), model.geom_size[hand]
    g = gravity_dir / np.linalg.norm(gravity_dir)
    u = np.cross(g, [1.0, 0.0, 0.0] if abs(g[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    frame = np.stack([u, np.cross(g, u), g])                                     # across, across, down
    reach = np.abs(frame * half).sum(axis=1)                                     # box half-width along each
    h = np.arange(-reach[2], reach[2] + step, step)                              # top (against g) to bottom
    for attempt in range(3):
        ab = rng.uniform(-reach[:2], reach[:2], size=(columns << attempt, 2))
        out = _deposit(center + (ab @ frame[:2])[:, None, :] + h[None, :, None] * g, g, center, half, boxes, radii, rng)
        if out is not None:
            return out
    raise ValueError(f"chaos_box: could not place {len(radii)} balls of radius up to {radii.max():.3f} m in a box of "
                     f"half-extents {tuple(float(x) for x in half)} around the hand: enlarge box_size, move it "
                     "(box_offset), or use fewer or smaller balls")


def _deposit(pts: np.ndarray, g: np.ndarray, center: np.ndarray, half: np.ndarray, boxes: tuple,
             radii: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """One deposition over candidate lines pts [K, H, 3] (top to bottom); None if the box jams."""
    K, H, _ = pts.shape
    room_wall = (half - np.abs(pts - center)).min(axis=-1)                       # [K, H]
    room = np.full((K, H), -np.inf)                                              # to the hand, then balls too
    inside = room_wall >= radii.min()
    room[inside] = _obb_distance(pts[inside], *boxes) - PLACEMENT_GAP
    out = np.empty((len(radii), 3))
    for i in rng.permutation(len(radii)):
        r = radii[i]
        free = (room_wall >= r) & (room >= r)
        resting = free & ~np.pad(free[:, 1:], ((0, 0), (0, 1)))                  # free, but not the point below
        if not resting.any():
            return None
        depth = np.where(resting, np.arange(H), -1).max(axis=1)                   # lowest resting point per line
        best = np.flatnonzero(depth == depth.max())
        k = int(best[rng.integers(len(best))])
        out[i] = pts[k, depth[k]]
        off = pts[:, 0] - out[i]
        near = np.flatnonzero(np.linalg.norm(off - np.outer(off @ g, g), axis=1) < r + radii.max() + PLACEMENT_GAP)
        d = pts[near] - out[i]                                                   # only lines this ball can block
        room[near] = np.minimum(room[near], np.sqrt((d * d).sum(axis=-1)) - r - PLACEMENT_GAP)
    return out


def build_chaos_box_model(domain: Domain, cfg: ChaosBoxConfig, gravity_dir: np.ndarray,
                          rng: np.random.Generator, hand_q: np.ndarray | None = None) -> mujoco.MjModel:
    """Hand, box walls and ``cfg.num_balls`` free balls; gravity = domain.gravity * gravity_dir.

    Ball radii and masses are drawn from the config ranges; ``qpos0`` holds the deposited
    (non-overlapping) balls around the hand at ``hand_q`` (default: canonical pose).  Every
    model built from one config has the same sizes, so any of them can share a RolloutPhysics.
    """
    g = np.asarray(gravity_dir, dtype=float) / np.linalg.norm(gravity_dir)
    hand_q = hc.CANONICAL_POSE if hand_q is None else hc.clamp_to_limits(np.asarray(hand_q, dtype=float))
    spec = new_spec(domain)
    spec.modelname = "leap_chaos_box"
    spec.option.gravity = domain.gravity * g
    # MuJoCo 4.0.0: Newton + implicitfast + sparse Jacobian (the default for nv >= 60; here
    # nv = 16 + 6B) returns wrong "converged" contact forces and balls fly off at 20 m/s.  CG
    # agrees with the dense-Jacobian and Euler references and is twice as fast here.
    spec.option.solver = mujoco.mjtSolver.mjSOL_CG
    spec.option.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_AUTORESET)  # a blow-up shows as NaN
    add_hand(spec, domain)
    center, half = box_center(cfg, g), np.asarray(cfg.box_size, dtype=float)
    friction = [cfg.ball_friction, 0.005, 0.0001]
    for axis in range(3):
        for sign in (1.0, -1.0):
            pos, size = center.copy(), half + 2 * WALL_HALF_THICKNESS
            pos[axis] += sign * (half[axis] + WALL_HALF_THICKNESS)
            size[axis] = WALL_HALF_THICKNESS
            spec.worldbody.add_geom(name=f"box_wall{'+-'[sign < 0]}{'xyz'[axis]}", type=mujoco.mjtGeom.mjGEOM_BOX,
                                    pos=pos, size=size, contype=WALL_BIT, conaffinity=WALL_BIT, friction=friction,
                                    group=2, rgba=[0.6, 0.7, 0.8, 0.15])
    radii = rng.uniform(*cfg.ball_radius, size=cfg.num_balls)
    masses = rng.uniform(*cfg.ball_mass, size=cfg.num_balls)
    solimp = list(cfg.ball_solimp) + [0.5, 2.0][:5 - len(cfg.ball_solimp)]
    for b in range(cfg.num_balls):
        body = spec.worldbody.add_body(name=f"ball{b}", pos=center)
        body.add_freejoint(name=f"ball{b}_free").damping = [cfg.ball_damping, 0.0, 0.0]
        body.explicitinertial = True
        body.mass, body.ipos, body.iquat = masses[b], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]  # ipos defaults to NaN
        body.inertia = [2.0 / 3.0 * masses[b] * radii[b] ** 2] * 3                         # thin-walled sphere
        body.add_geom(name=f"ball{b}_geom", type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[radii[b], 0, 0],
                      contype=BALL_BITS, conaffinity=BALL_BITS, condim=3, friction=friction,
                      solref=[cfg.ball_softness, cfg.ball_dampratio], solimp=solimp, rgba=[0.9, 0.35, 0.3, 1.0])
    add_hand_sensors(spec)
    model = spec.compile()
    if cfg.num_balls:
        balls = place_balls(model, hand_q, center, half, g, radii, rng)
        model.qpos0[ball_qpos_adr(model, cfg.num_balls)[:, :3]] = balls
    return model


def ball_qpos_adr(model: mujoco.MjModel, num_balls: int, dof: bool = False) -> np.ndarray:
    """qpos addresses [B, 7] of each ball's free joint (position 3, quaternion 4), or with
    ``dof`` its qvel addresses [B, 6] (linear 3, angular 3)."""
    joints = np.array([model.joint(f"ball{b}_free").id for b in range(num_balls)], dtype=int)
    return (model.jnt_dofadr if dof else model.jnt_qposadr)[joints][:, None] + np.arange(6 if dof else 7)


class ChaosBoxEnv(EnvBase):
    """Batched Chaos Box, ``batch_size=[num_envs]``: open-loop replay under random ball loads.

    Each reset draws a wrist orientation and new balls, deposits them and lets them settle
    while the hand holds ``"reset_q"`` [N, 16] from the reset input (default: canonical pose).
    """

    def __init__(self, cfg: ChaosBoxConfig | dict | None = None, device: str | torch.device = "cpu",
                 action_mode: str | None = None):
        cfg = cfg if isinstance(cfg, ChaosBoxConfig) else ChaosBoxConfig.from_dict(cfg)
        if action_mode is not None:
            cfg = dataclasses.replace(cfg, action_mode=action_mode)
        super().__init__(device=device, batch_size=torch.Size([n := cfg.num_envs]))
        self.cfg = cfg
        self.domain = load_domain(cfg.domain)
        self.rng = np.random.default_rng(cfg.seed)
        self.named_gravity = ori.gravity_directions(cfg.wrist)
        self.deploy = DeployObservation(cfg.num_envs, cfg.deploy_history)
        self.layout = self.deploy.layout
        self.substeps, self.dt = self.domain.substeps, self.domain.control_dt
        self.box_size = np.asarray(cfg.box_size, dtype=float)

        gravity, q0 = self._sample_gravity(n), np.tile(hc.CANONICAL_POSE, (n, 1))
        models = [build_chaos_box_model(self.domain, cfg, gravity[k], self.rng, q0[k]) for k in range(n)]
        self.physics = RolloutPhysics(models, self.substeps, cfg.nthread)
        self.hand = HandIndex.from_model(models[0])
        self.sensors = SensorLayout.from_model(models[0])
        self.ball_adr = ball_qpos_adr(models[0], cfg.num_balls)                  # [B, 7]
        self._ball_vel = ball_qpos_adr(models[0], cfg.num_balls, dof=True)[:, :3].ravel()    # linear dofs
        self._settle_pool = rollout.Rollout(nthread=cfg.nthread if cfg.nthread > 1 else 0)
        self._settle_datas = [mujoco.MjData(models[0]) for _ in range(cfg.nthread)]

        self.control = HandController(n, self.domain, cfg.action_scale)
        self.steps = np.zeros(n, dtype=np.int64)
        self.gravity_dir, self.box_center, self.wrist_quat = np.zeros((n, 3)), np.zeros((n, 3)), np.zeros((n, 4))
        axis = np.zeros(3) if cfg.axis is None else np.asarray(cfg.axis, dtype=float) / np.linalg.norm(cfg.axis)
        self.axis = np.tile(axis, (n, 1))
        self.q, self.q_meas, self.qdot = np.zeros((n, J)), np.zeros((n, J)), np.zeros((n, J))
        self._last_sensors = np.zeros((n, self.physics.nsensordata))
        self.blowups = 0          # physics blow-ups detected (and truncated) since construction
        self._make_specs(n)
        self._reset_envs(np.arange(n), q0, gravity, models)

    # ------------------------------------------------------------------ setup
    def _make_specs(self, n: int) -> None:
        shape, dev = (n,), self.device
        f32 = lambda *s: Unbounded((n, *s), dtype=torch.float32, device=dev)  # noqa: E731
        self.observation_spec = Composite(
            policy_obs=f32(self.layout.dim), joint_pos=f32(J), joint_pos_measured=f32(J), joint_target=f32(J),
            joint_vel=f32(J), joint_torque=f32(J), contact_force=f32(len(hc.CONTACT_BODIES), 3),
            gravity_dir=f32(3), shape=shape, device=dev)
        if self.cfg.action_mode == "absolute":
            lo, hi = (torch.as_tensor(v, dtype=torch.float32).expand(n, J).clone() for v in LIMITS)
            self.action_spec = Bounded(lo, hi, (n, J), dtype=torch.float32, device=dev)
        else:
            self.action_spec = Bounded(-1.0, 1.0, (n, J), dtype=torch.float32, device=dev)
        self.reward_spec = Unbounded((n, 1), dtype=torch.float32, device=dev)
        flag = lambda: Categorical(2, (n, 1), dtype=torch.bool, device=dev)  # noqa: E731
        self.done_spec = Composite(done=flag(), terminated=flag(), truncated=flag(), shape=shape, device=dev)

    def _set_seed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)

    def _sample_gravity(self, k: int) -> np.ndarray:
        if self.named_gravity is None:
            return ori.sample_unit_vectors(self.rng, k)
        return self.named_gravity[self.rng.integers(len(self.named_gravity), size=k)]

    # ------------------------------------------------------------------ reset
    def _reset_envs(self, ids: np.ndarray, q: np.ndarray, gravity: np.ndarray | None = None,
                    models: list | None = None) -> None:
        """New wrist orientation and balls for envs ``ids``; hand at q [R, 16]; balls settled."""
        q = hc.clamp_to_limits(q)
        gravity = self._sample_gravity(len(ids)) if gravity is None else gravity
        models = models or [build_chaos_box_model(self.domain, self.cfg, g, self.rng, qk) for g, qk in zip(gravity, q)]
        self.physics.set_models(ids, models)
        qpos = np.stack([m.qpos0 for m in models])
        self.hand.set_joint_positions(qpos, q)
        self.physics.set_state(ids, qpos, np.zeros((len(ids), self.physics.nv)))
        if self.cfg.settle_steps > 0 and self.cfg.num_balls > 0:
            self._settle(ids, models, q)
        self._last_sensors[ids] = self.physics.forward(ids)
        self.control.reset(ids, q)
        self.q[ids] = self.hand.joint_positions(self.physics.qpos[ids])
        self.qdot[ids] = self.hand.joint_velocities(self.physics.qvel[ids])
        self.q_meas[ids] = self.control.measure(self.q[ids], self.rng)
        self.deploy.reset(ids, self.q_meas[ids], q)
        self.gravity_dir[ids] = gravity
        self.box_center[ids] = box_center(self.cfg, gravity)
        self.wrist_quat[ids] = ori.orientation_quat(gravity)
        self.steps[ids] = 0

    def _settle(self, ids: np.ndarray, models: list, q: np.ndarray) -> None:
        """Let the balls fall into place for ``settle_steps`` physics steps, the hand holding q."""
        state = self.physics.state[ids].copy()
        for start in range(0, self.cfg.settle_steps, SETTLE_CHUNK):
            nstep = min(SETTLE_CHUNK, self.cfg.settle_steps - start)
            ctrl = np.repeat(q[:, None, :], nstep, axis=1)
            states, _ = self._settle_pool.rollout(models, self._settle_datas, state, ctrl,
                                                  control_spec=CTRL_SPEC, nstep=nstep)
            state = states[:, -1].copy()
        ok = np.isfinite(state).all(axis=1)
        state[:, 0] = 0.0                                   # episode time starts after settling
        self.physics.state[ids[ok]] = state[ok]             # a failed settle keeps the deposited pile

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        n = self.batch_size[0]
        ids = reset_ids(tensordict, n)
        if len(ids):
            if tensordict is not None and "reset_q" in tensordict.keys():
                q = tensordict["reset_q"].detach().to("cpu", torch.float64).numpy().reshape(n, J)[ids]
            else:
                q = np.tile(hc.CANONICAL_POSE, (len(ids), 1))
            self._reset_envs(ids, q)
        return self._output(np.zeros(n, bool), None)

    # ------------------------------------------------------------------ step
    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        n = self.batch_size[0]
        action = tensordict["action"].detach().to("cpu", torch.float64).numpy().reshape(n, J)
        ctrl = self.control.absolute(action) if self.cfg.action_mode == "absolute" else self.control.relative(action)
        _, sensors = self.physics.step(ctrl, None)
        last, qvel = sensors[:, -1], self.physics.qvel
        self.q = self.hand.joint_positions(self.physics.qpos)
        self.qdot = self.hand.joint_velocities(qvel)
        blowup = ~np.isfinite(self.physics.state).all(axis=1) | ~np.isfinite(last).all(axis=1)
        if self.cfg.num_balls:
            speed = np.sqrt((qvel[:, self._ball_vel].reshape(n, -1, 3) ** 2).sum(-1)).max(axis=1)
            blowup |= ~(speed <= self.cfg.max_ball_speed)
        if blowup.any():
            self.blowups += int(blowup.sum())
            self.q[blowup], self.qdot[blowup] = self.control.target[blowup], 0.0
            last = np.where(blowup[:, None], 0.0, last)
        self._last_sensors = last
        self.steps += 1
        truncated = (self.steps >= self.cfg.episode_steps) | blowup
        self.q_meas = self.control.measure(self.q, self.rng)
        self.deploy.push(self.q_meas, self.control.target)
        return self._output(truncated, np.zeros(n, dtype=np.float32))

    # ------------------------------------------------------------------ outputs
    def _output(self, truncated: np.ndarray, reward: np.ndarray | None) -> TensorDictBase:
        n, s = self.batch_size[0], self.sensors
        policy_obs = self.deploy.build(self.wrist_quat, self.axis)
        f32 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
        col = lambda a: torch.as_tensor(np.asarray(a).reshape(n, 1), dtype=torch.bool)  # noqa: E731
        contact = self._last_sensors[:, s["contact"]].reshape(n, len(hc.CONTACT_BODIES), 4)[:, :, 1:]
        out = {
            "policy_obs": torch.from_numpy(policy_obs.copy()),
            "joint_pos": f32(self.q), "joint_pos_measured": f32(self.q_meas),
            "joint_target": f32(self.control.target), "joint_vel": f32(self.qdot),
            "joint_torque": f32(self._last_sensors[:, s["joint_torque"]]),
            "contact_force": f32(contact), "gravity_dir": f32(self.gravity_dir),
            "done": col(truncated), "terminated": col(np.zeros(n, bool)), "truncated": col(truncated),
        }
        if reward is not None:
            out["reward"] = torch.from_numpy(reward.reshape(n, 1))
        return TensorDict(out, batch_size=[n], device=self.device)

    # ------------------------------------------------------------------ inspection
    def ball_positions(self) -> np.ndarray:
        """Ball centres [N, B, 3] (hand frame) at the current state."""
        return self.physics.qpos[:, self.ball_adr[:, :3]]

    def close(self, *, raise_if_closed: bool = True) -> None:
        self.physics.close()
        self._settle_pool.close()
        super().close(raise_if_closed=raise_if_closed)
