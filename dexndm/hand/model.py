"""Build the LEAP hand in MuJoCo with MjSpec, its physical parameters taken from a domain.

The kinematics and collision boxes are fixed facts (``dexndm.hand.geometry``); gains,
torque limits, damping, armature, friction loss, backlash, link masses and contact
friction come from a :class:`~dexndm.sim.domain.Domain`, so a target domain is this
same builder with other numbers.  PD control runs inside MuJoCo's actuator model every
physics step: ``tau = clip(kp (target - q) - kd qdot, +-torque_limit)`` (paper A.1).

Backlash is modelled physically: a joint with play gets a second, unactuated hinge on
the same axis limited to +-backlash/2.  The PD acts on the motor-side hinge and the
measured joint angle is the sum of both (``HandIndex.joint_qpos``).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from dexndm.hand import constants as hc
from dexndm.hand.geometry import BOXES, HINGE_AXIS, LINKS, contact_exclusions

#: Orientation of the mount in the world (w x y z).  Chosen so that the world frame is
#: the hand frame used everywhere in dexndm: +z is the palm normal (out of the grasping
#: side), +x points from the wrist towards the fingertips, +y = z cross x (towards the
#: thumb side).  Checked by tests/test_hand.py from fingertip positions.
MOUNT_QUAT = (1.0, 0.0, 0.0, 0.0)
#: Where the mount sits in the world frame (metres).
MOUNT_POS = (0.0, 0.0, 0.0)

COLLISION_CONTYPE = 1
COLLISION_CONAFFINITY = 1
PLAY_DAMPING = 1e-3   # Nm s/rad on a backlash hinge: keeps the free play from chattering
PLAY_ARMATURE = 1e-5  # kg m^2


def _box_inertia(mass: float, boxes: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Diagonal inertia of a solid box spanning the body's collision boxes ([3]).

    The hand's description gives masses and COMs but no inertias; a box the size of
    the link's geometry is a fair, always positive-definite estimate.
    """
    if not boxes:
        return np.full(3, mass * 1e-4)
    lo = np.min([c - h for c, h in boxes], axis=0)
    hi = np.max([c + h for c, h in boxes], axis=0)
    a, b, c = (hi - lo) / 2
    return mass / 3.0 * np.array([b * b + c * c, a * a + c * c, a * a + b * b])


def _rotated_half_extent(half: np.ndarray, quat: tuple) -> np.ndarray:
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, np.asarray(quat, dtype=float) / np.linalg.norm(quat))
    return np.abs(mat.reshape(3, 3)) @ half


def add_hand(spec: mujoco.MjSpec, domain) -> None:
    """Add the hand (bodies, joints, geoms, fingertip sites, PD actuators) to ``spec``."""
    bodies: dict[str, mujoco.MjsBody] = {}
    mount = spec.worldbody.add_body(name="leap_mount", pos=MOUNT_POS, quat=MOUNT_QUAT)
    bodies["leap_mount"] = mount
    geoms_by_body: dict[str, list] = {}
    for box in BOXES:
        geoms_by_body.setdefault(box.body, []).append(box)

    joint_index = {name: i for i, name in enumerate(hc.JOINT_NAMES)}
    for link in LINKS:
        kwargs = dict(name=link.name, pos=link.pos)
        if link.quat is not None:
            kwargs["quat"] = link.quat
        body = bodies[link.parent].add_body(**kwargs)
        bodies[link.name] = body
        boxes = [(np.asarray(b.pos), _rotated_half_extent(np.asarray(b.half), b.quat)) for b in geoms_by_body.get(link.name, [])]
        mass = domain.link_mass[link.name]
        body.explicitinertial = True
        body.mass = mass
        body.ipos = link.com
        body.inertia = _box_inertia(mass, boxes)
        if link.joint is not None:
            j = joint_index[link.joint]
            body.add_joint(
                name=link.joint, type=mujoco.mjtJoint.mjJNT_HINGE, axis=HINGE_AXIS,
                range=[hc.JOINT_LOWER[j], hc.JOINT_UPPER[j]], limited=mujoco.mjtLimited.mjLIMITED_TRUE,
                damping=domain.damping[j], armature=domain.armature[j], frictionloss=domain.frictionloss[j],
            )
            if domain.backlash[j] > 0:
                half = domain.backlash[j] / 2
                body.add_joint(
                    name=f"{link.joint}_play", type=mujoco.mjtJoint.mjJNT_HINGE, axis=HINGE_AXIS,
                    range=[-half, half], limited=mujoco.mjtLimited.mjLIMITED_TRUE,
                    damping=PLAY_DAMPING, armature=PLAY_ARMATURE,
                )

    for i, box in enumerate(BOXES):
        friction = domain.fingertip_friction if box.fingertip else domain.link_friction
        bodies[box.body].add_geom(
            name=f"{box.body}_{'tip' if box.fingertip else 'col'}{i}", type=mujoco.mjtGeom.mjGEOM_BOX,
            size=box.half, pos=box.pos, quat=box.quat, friction=[friction, 0.005, 0.0001],
            contype=COLLISION_CONTYPE, conaffinity=COLLISION_CONAFFINITY, group=3,
            solref=[0.02, 1.5], solimp=[0.9, 0.99, 0.001, 0.5, 2.0],
            rgba=[0.95, 0.75, 0.3, 1.0] if box.fingertip else [0.25, 0.25, 0.28, 1.0],
        )
    for tip_body, point in zip(hc.FINGERTIP_BODIES, hc.FINGERTIP_POINTS):
        bodies[tip_body].add_site(name=f"{tip_body[:2]}_tip", pos=point, size=[0.004, 0, 0])

    for a, b in contact_exclusions():
        spec.add_exclude(bodyname1=a, bodyname2=b)

    for j, name in enumerate(hc.JOINT_NAMES):
        kp, kd, limit = domain.kp[j], domain.kd[j], domain.torque_limit[j]
        act = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.gaintype = mujoco.mjtGain.mjGAIN_FIXED
        act.biastype = mujoco.mjtBias.mjBIAS_AFFINE
        act.gainprm[0] = kp
        act.biasprm[:3] = [0.0, -kp, -kd]
        act.ctrlrange = [hc.JOINT_LOWER[j], hc.JOINT_UPPER[j]]
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-limit, limit]
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE


@dataclass(frozen=True)
class HandIndex:
    """Where the hand lives in a compiled model's arrays, in hardware joint order.

    ``joint_qpos`` is [16, 2]: the motor hinge's qpos address and the backlash hinge's
    (or -1); measured angle = qpos[a] + qpos[b].  Arrays index full-physics state
    vectors after the leading time entry is accounted for by the caller.
    """

    motor_qpos: np.ndarray   # [16]
    play_qpos: np.ndarray    # [16], -1 where there is no play
    motor_dof: np.ndarray    # [16]
    play_dof: np.ndarray     # [16], -1 where there is no play
    actuator: np.ndarray     # [16]
    tip_sites: np.ndarray    # [4]

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> "HandIndex":
        def jid(name: str) -> int:
            return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)

        motor = [jid(n) for n in hc.JOINT_NAMES]
        play = [jid(f"{n}_play") for n in hc.JOINT_NAMES]
        if min(motor) < 0:
            raise ValueError("model has no LEAP hand joints; was it built with dexndm.hand.model.add_hand?")
        return cls(
            motor_qpos=model.jnt_qposadr[motor].copy(),
            play_qpos=np.array([model.jnt_qposadr[p] if p >= 0 else -1 for p in play]),
            motor_dof=model.jnt_dofadr[motor].copy(),
            play_dof=np.array([model.jnt_dofadr[p] if p >= 0 else -1 for p in play]),
            actuator=np.array([mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in hc.JOINT_NAMES]),
            tip_sites=np.array([mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, f"{b[:2]}_tip")
                                for b in hc.FINGERTIP_BODIES]),
        )

    @staticmethod
    def _with_play(values: np.ndarray, motor: np.ndarray, play: np.ndarray) -> np.ndarray:
        out = values[..., motor]
        has = play >= 0
        if np.any(has):
            out = out.copy()
            out[..., has] += values[..., play[has]]
        return out

    def joint_positions(self, qpos: np.ndarray) -> np.ndarray:
        """Measured joint angles [..., 16] from qpos [..., nq] (motor + play)."""
        return self._with_play(qpos, self.motor_qpos, self.play_qpos)

    def joint_velocities(self, qvel: np.ndarray) -> np.ndarray:
        """Measured joint velocities [..., 16] from qvel [..., nv]."""
        return self._with_play(qvel, self.motor_dof, self.play_dof)

    def set_joint_positions(self, qpos: np.ndarray, q: np.ndarray) -> None:
        """Write joint angles q [..., 16] into qpos in place (play hinges centred)."""
        qpos[..., self.motor_qpos] = q
        has = self.play_qpos >= 0
        if np.any(has):
            qpos[..., self.play_qpos[has]] = 0.0
