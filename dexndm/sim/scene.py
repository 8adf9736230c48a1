"""Scenes: the hand plus what it handles (one object, or the Chaos Box), compiled to MjModel.

Every model of one batch must have identical sizes (``mujoco.rollout`` steps them on
shared MjData), so an object always occupies ``objects.MAX_PARTS`` geom slots and the
sensor set is fixed.  Sensors are the observation's data source: MuJoCo computes them
in C after every physics step, and ``SensorLayout`` names their slices.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import mujoco
import numpy as np

from dexndm.hand import constants as hc
from dexndm.hand.model import add_hand
from dexndm.sim.domain import Domain
from dexndm.sim.objects import ObjectShape, add_object_geoms

OBJECT_BODY = "object"
#: Object density used to build the model (kg/m^3); per-env masses are set afterwards.
BUILD_DENSITY = 400.0


def new_spec(domain: Domain) -> mujoco.MjSpec:
    spec = mujoco.MjSpec()
    spec.modelname = "leap_hand"
    spec.compiler.degree = False  # every angle in dexndm is in radians
    opt = spec.option
    opt.timestep = domain.timestep
    # Euler (joint damping implicit): implicitfast drops the gyroscopic terms and lets small,
    # fast-spinning objects blow up in pinch grasps (seen here); Euler costs the same.
    opt.integrator = mujoco.mjtIntegrator.mjINT_EULER
    opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    opt.impratio = 2.0
    opt.gravity = [0.0, 0.0, -domain.gravity]
    spec.visual.global_.offwidth = 640
    spec.visual.global_.offheight = 480
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.6, 0.6, 0.6]
    spec.worldbody.add_light(name="key", pos=[0.15, -0.3, 0.5], dir=[0.0, 0.5, -1.0])
    spec.add_texture(name="sky", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX, builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
                     rgb1=[0.75, 0.82, 0.9], rgb2=[0.98, 0.98, 1.0], width=64, height=64)
    return spec


def add_hand_sensors(spec: mujoco.MjSpec) -> None:
    """Fingertip kinematics and wrenches, actuator torques, per-body contacts."""
    site = mujoco.mjtObj.mjOBJ_SITE
    S = mujoco.mjtSensor
    for body in hc.FINGERTIP_BODIES:
        tip = f"{body[:2]}_tip"
        for kind, suffix in ((S.mjSENS_FRAMEPOS, "pos"), (S.mjSENS_FRAMEQUAT, "quat"),
                             (S.mjSENS_FRAMELINVEL, "linvel"), (S.mjSENS_FRAMEANGVEL, "angvel")):
            spec.add_sensor(name=f"{tip}_{suffix}", type=kind, objtype=site, objname=tip)
    for body in hc.FINGERTIP_BODIES:
        tip = f"{body[:2]}_tip"
        spec.add_sensor(name=f"{tip}_force", type=S.mjSENS_FORCE, objtype=site, objname=tip)
        spec.add_sensor(name=f"{tip}_torque", type=S.mjSENS_TORQUE, objtype=site, objname=tip)
    for name in hc.JOINT_NAMES:
        spec.add_sensor(name=f"{name}_torque", type=S.mjSENS_ACTUATORFRC,
                        objtype=mujoco.mjtObj.mjOBJ_ACTUATOR, objname=name)
    for body in hc.CONTACT_BODIES:
        # data = found | force (bits 1, 2), reduce = netforce (3), one slot.
        spec.add_sensor(name=f"{body}_contact", type=S.mjSENS_CONTACT, objtype=mujoco.mjtObj.mjOBJ_BODY,
                        objname=body, intprm=[3, 3, 1])


def add_object_sensors(spec: mujoco.MjSpec) -> None:
    S = mujoco.mjtSensor
    for kind, suffix in ((S.mjSENS_FRAMEPOS, "pos"), (S.mjSENS_FRAMEQUAT, "quat"),
                         (S.mjSENS_FRAMELINVEL, "linvel"), (S.mjSENS_FRAMEANGVEL, "angvel")):
        spec.add_sensor(name=f"object_{suffix}", type=kind, objtype=mujoco.mjtObj.mjOBJ_XBODY, objname=OBJECT_BODY)
    for body in ("palm", *hc.FINGERTIP_BODIES):
        # this body against the object only: the per-body sensors also count the hand's own links
        # (an index tip pressed on the thumb tip); data = found (bit 1), one slot
        spec.add_sensor(name=f"{body}_object_contact", type=S.mjSENS_CONTACT, objtype=mujoco.mjtObj.mjOBJ_BODY,
                        objname=body, reftype=mujoco.mjtObj.mjOBJ_BODY, refname=OBJECT_BODY, intprm=[1, 0, 1])


@functools.lru_cache(maxsize=1)
def kinematic_hand() -> tuple[mujoco.MjModel, mujoco.MjData]:
    """The nominal hand alone, for kinematic queries (geometry is domain-independent)."""
    from dexndm.sim.domain import load_domain

    domain = load_domain("nominal")
    spec = new_spec(domain)
    add_hand(spec, domain)
    model = spec.compile()
    return model, mujoco.MjData(model)


def fingertip_centroids(q: np.ndarray) -> np.ndarray:
    """Centroid of the four fingertips ([K, 3], hand frame) for joint positions q [K, 16]."""
    from dexndm.hand.model import HandIndex

    model, data = kinematic_hand()
    idx = HandIndex.from_model(model)
    out = np.empty((len(q), 3))
    for k, row in enumerate(np.atleast_2d(q)):
        idx.set_joint_positions(data.qpos, row)
        mujoco.mj_kinematics(model, data)
        out[k] = data.site_xpos[idx.tip_sites].mean(axis=0)
    return out


@functools.lru_cache(maxsize=1)
def grasp_center() -> np.ndarray:
    """Fingertip centroid at the canonical grasp pose ([3], hand frame, metres)."""
    return fingertip_centroids(hc.CANONICAL_POSE[None])[0]


@functools.lru_cache(maxsize=1)
def palm_center() -> np.ndarray:
    """A point over the palm ([3], hand frame): 3 cm towards the fingertips and 4 cm out of
    the palm from the finger bases' centroid.  Grasp generation starts objects between
    this point and the fingertips' convergence point."""
    model, data = kinematic_hand()
    data.qpos[:] = 0.0
    mujoco.mj_kinematics(model, data)
    bases = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, b) for b in ("if_bs", "mf_bs", "rf_bs")]
    return data.xpos[bases].mean(axis=0) + np.array([0.03, 0.0, 0.04])


def build_object_model(domain: Domain, shape: ObjectShape, scale: float) -> mujoco.MjModel:
    """Hand + one free object (``shape`` scaled by ``scale``) at the grasp centre."""
    spec = new_spec(domain)
    add_hand(spec, domain)
    body = spec.worldbody.add_body(name=OBJECT_BODY, pos=grasp_center())
    body.add_freejoint(name="object_free")
    add_object_geoms(body, shape.scaled(scale), density=BUILD_DENSITY, friction=1.0, rgba=(0.2, 0.5, 0.85, 1.0))
    add_hand_sensors(spec)
    add_object_sensors(spec)
    return spec.compile()


@dataclass(frozen=True)
class SensorLayout:
    """Slices of a model's sensordata, by sensor group ([start, stop) columns)."""

    slices: dict[str, slice]

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> "SensorLayout":
        def span(names: list[str]) -> slice:
            ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, n) for n in names]
            if min(ids) < 0:
                missing = [n for n, i in zip(names, ids) if i < 0]
                raise ValueError(f"model lacks sensors {missing}")
            starts = model.sensor_adr[ids]
            stop = starts[-1] + model.sensor_dim[ids[-1]]
            width = sum(int(model.sensor_dim[i]) for i in ids)
            if stop - starts[0] != width:
                raise ValueError(f"sensors {names[0]}..{names[-1]} are not contiguous")
            return slice(int(starts[0]), int(stop))

        tips = [f"{b[:2]}_tip" for b in hc.FINGERTIP_BODIES]
        slices = {
            "tip_state": span([f"{t}_{s}" for t in tips for s in ("pos", "quat", "linvel", "angvel")]),
            "tip_wrench": span([f"{t}_{s}" for t in tips for s in ("force", "torque")]),
            "joint_torque": span([f"{n}_torque" for n in hc.JOINT_NAMES]),
            "contact": span([f"{b}_contact" for b in hc.CONTACT_BODIES]),
        }
        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, "object_pos") >= 0:
            slices["object_state"] = span([f"object_{s}" for s in ("pos", "quat", "linvel", "angvel")])
            slices["tip_object_contact"] = span([f"{b}_object_contact" for b in hc.FINGERTIP_BODIES])
            slices["palm_object_contact"] = span(["palm_object_contact"])
        return cls(slices)

    def __getitem__(self, name: str) -> slice:
        return self.slices[name]
