"""``SimHand``: a MuJoCo target domain behind the LEAP hand's interface (DexNDM Sec. 4.2,
the sim-to-sim setting: a domain stands in for the real hand).

One :class:`~dexndm.sim.env.RotationEnv` environment (domain randomisation off, the
domain's gaps on) holds an object in a grasp from the grasp cache.  Like
:class:`~dexndm.deploy.leap_hand.LeapHand` it offers ``connect / read / clamp /
command / disable / close``; unlike it, time does not pass on its own: every
``command`` advances the physics by one control tick (1/20 s, the domain's substeps),
so a control loop over a SimHand runs in lockstep and is deterministic.

Targets go through the env's ``target_offset`` with a zero relative action, so the
hand is sent exactly the (clamped) command while the env's own chain stays put.
``quantize=True`` rounds commands and readings to Dynamixel encoder ticks, exactly as
the bus path does, so a loop on a SimHand and one on the emulated bus see the same
numbers (``tests/test_deploy_loop.py`` compares them).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from dexndm.deploy.leap_hand import clamp_command, command_ticks, rad_to_ticks, ticks_to_rad
from dexndm.hand import constants as hc
from dexndm.sim import orientations as ori
from dexndm.sim import quat

#: Rough XC330 torque constant (Nm per A) to report actuator torque as motor current;
#: only for a plausible ``current`` reading, nothing depends on its exact value.
NM_PER_AMP = 0.5


@dataclass
class SimHandConfig:
    """A simulated hand: target domain, object in the grasp, wrist orientation.

    Validated at construction (:meth:`validate`), before anything is built.
    """

    domain: Any = "nominal"          # preset name (dexndm/domains), path to a domain YAML, or a mapping
    object_set: str = "cuboids"
    object_name: str | None = None   # None: the set's first object
    wrist: str = "palm_up"           # a named wrist orientation (gravity direction)
    axis: str = "+z"                 # rotation axis for the env's own metrics (the loop's axis is its own)
    seed: int = 0
    grasp_dir: str = "~/.cache/dexndm/grasps"
    grasp_candidates: int = 64       # grasp generation effort when the cache is built
    grasp: dict[str, Any] = field(default_factory=dict)  # start-grasp settings (GraspConfig fields), e.g. the
                                     # preset the deployed policy was trained from (conf/grasp/palm_rest.yaml)
    quantize: bool = False           # round commands/readings to encoder ticks like the Dynamixel path
    max_step_rad: float = 0.25       # per tick, as LeapHandConfig
    nthread: int = 1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming every bad field."""
        errs = []
        if self.wrist not in ori.NAMED_ORIENTATIONS:
            errs.append(f"wrist must be one of {ori.NAMED_ORIENTATIONS}, got {self.wrist!r}")
        try:
            ori.axes_for(self.axis)
        except ValueError as e:
            errs.append(f"axis: {e}")
        s = self.max_step_rad
        if not (isinstance(s, (int, float)) and s > 0):
            errs.append(f"max_step_rad must be positive, got {s!r}")
        if not (isinstance(self.grasp_candidates, int) and self.grasp_candidates >= 1):
            errs.append(f"grasp_candidates must be an int >= 1, got {self.grasp_candidates!r}")
        from dexndm.sim.grasps import GraspConfig

        known = {f.name for f in fields(GraspConfig)}
        unknown = sorted(set(self.grasp or {}) - known)
        if unknown:
            errs.append(f"grasp: unknown keys {unknown}; valid keys: {sorted(known)}")
        elif "candidates" in (self.grasp or {}):
            errs.append("grasp.candidates: set grasp_candidates instead")
        if errs:
            raise ValueError("invalid SimHandConfig: " + "; ".join(errs))


class SimHand:
    """The simulated hand; ``command`` advances one tick. Arrays ``[16]``, sim rad, hardware order."""

    realtime = False

    def __init__(self, config: SimHandConfig) -> None:
        config.validate()
        self.config = config
        self.env = None
        self.last_command: np.ndarray | None = None
        self.torque_on = False
        self.ticks = 0                      # control ticks simulated since connect
        self.rotation_rad = 0.0             # object rotation about the env axis, accumulated
        self.dropped = False

    # ---- lifecycle ------------------------------------------------------------------
    def connect(self) -> None:
        """Build the domain and the grasp, then hold the present joint positions (as LeapHand does)."""
        from dexndm.sim import make_env
        from dexndm.sim.objects import object_set

        c = self.config
        names = [c.object_name or object_set(c.object_set)[0].name]
        self.env = make_env(num_envs=1, nthread=c.nthread, object_set=c.object_set, object_names=names,
                            wrist=c.wrist, axes=c.axis, domain=c.domain, seed=c.seed, grasp_dir=c.grasp_dir,
                            grasp={**dict(c.grasp or {}), "candidates": c.grasp_candidates}, episode_steps=10**9,
                            randomization={"enabled": False, "scale_bins": 1})
        self.env.reset()
        self._grasp_target = self.env.control.target[0].copy()
        self.last_command = self.read()["q"]
        self.torque_on = True
        self.ticks, self.rotation_rad, self.dropped = 0, 0.0, False

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None

    def __enter__(self) -> SimHand:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _env(self):
        if self.env is None:
            raise RuntimeError("SimHand is not connected; call connect() first")
        return self.env

    # ---- state ------------------------------------------------------------------------
    def read(self) -> dict[str, np.ndarray]:
        """``q`` [16] (as the domain's encoders report it), ``qdot`` [16] rad/s, ``current`` [16] mA."""
        env = self._env()
        q = env.q_hist[0, -1].copy()
        if self.config.quantize:
            q = ticks_to_rad(rad_to_ticks(q))
        torque = env._last_sensors[0, env.sensors["joint_torque"]]
        return {"q": q, "qdot": env._last_qvel[0].copy(), "current": torque / NM_PER_AMP * 1000.0}

    def raw_joint_ticks(self) -> dict[str, np.ndarray]:
        """Register values the emulator serves: position, velocity (0.229 rpm) and current (1.34 mA) units."""
        s = self.read()        # the domain's encoder model (noise, bias) applies to the emulated bus too
        return {"present_position": rad_to_ticks(s["q"]),
                "present_velocity": np.rint(s["qdot"] * 60.0 / (2 * math.pi) / 0.229).astype(np.int64),
                "present_current": np.rint(s["current"] / 1.34).astype(np.int64)}

    def object_pose(self) -> np.ndarray:
        """Object position (m) and quaternion (w, x, y, z) [7] in the hand frame."""
        env = self._env()
        oq = env.sampler.object_qpos
        pose = env.physics.qpos[0, oq:oq + 7].copy()
        pose[3:] = quat.normalize(pose[3:])
        return pose

    def start_target(self) -> np.ndarray:
        """Where a run starts: the grasp's squeezing target (holding the present q lets the object slip)."""
        self._env()
        return self._grasp_target.copy()

    def describe(self) -> dict[str, Any]:
        """The domain (``Domain.to_dict()``) and this hand's settings: the recording's ``domain`` attr."""
        d = dict(self._env().domain.to_dict())
        d["sim_hand"] = asdict(self.config)
        return d

    @property
    def gravity_dir(self) -> np.ndarray:
        return self._env().gravity_dir[0].copy()

    # ---- commands ---------------------------------------------------------------------
    def clamp(self, q_target: np.ndarray) -> np.ndarray:
        """The command that would be sent for ``q_target`` (limits, max step; NaN holds)."""
        if self.last_command is None:
            raise RuntimeError("SimHand is not connected; call connect() first")
        return clamp_command(q_target, self.last_command, self.config.max_step_rad)

    def command(self, q_target: np.ndarray) -> np.ndarray:
        """Clamp, send, advance one control tick; return what was sent [16].

        With torque off (after :meth:`disable`) the command is stored but time does not
        advance, as on the emulated bus, whose physics advances per goal write with torque on.
        """
        sent = self.clamp(q_target)
        if self.config.quantize:
            sent = ticks_to_rad(command_ticks(sent))
        self.last_command = sent.copy()
        if self.torque_on:
            self.step(sent)
        return sent

    def step(self, target: np.ndarray) -> None:
        """One tick of physics tracking ``target`` [16] (clipped to the joint limits)."""
        env = self._env()
        desired = np.clip(np.asarray(target, dtype=np.float64), hc.JOINT_LOWER, hc.JOINT_UPPER)
        offset = torch.as_tensor(desired[None] - env.control.target, dtype=torch.float64)
        before = env.obj_quat[0].copy()
        out = env.step(TensorDict({"action": torch.zeros(1, hc.NUM_JOINTS), "target_offset": offset}, batch_size=[1]))
        self.ticks += 1
        self.rotation_rad += float(quat.rotation_vector(before[None], env.obj_quat)[0] @ env.axis[0])
        self.dropped |= bool(out["next", "terminated"][0, 0])

    def disable(self) -> None:
        """Torque off: further commands are not executed."""
        self.torque_on = False

    def metrics(self) -> dict[str, float]:
        """Ticks simulated, object rotation about the env axis (rad), whether it dropped."""
        return {"ticks": self.ticks, "rotation_rad": self.rotation_rad, "dropped": self.dropped,
                "axis": ori.axes_for(self.config.axis)[0].tolist()}
