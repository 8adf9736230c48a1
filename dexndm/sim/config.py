"""Typed configuration of the rotation task; Hydra YAML maps onto these dataclasses.

``EnvConfig.from_dict`` rejects unknown keys (naming them) so a typo in a sweep cannot
silently run the default.  Randomisation ranges follow DexNDM Appendix C, Table 9.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dexndm.sim.control import ACTION_SCALE
from dexndm.sim.grasps import GraspConfig
from dexndm.sim.reward import RewardConfig
from dexndm.typed_config import from_mapping

#: What ``EnvConfig.ungraspable`` accepts.
UNGRASPABLE_MODES = ("error", "skip")


@dataclass
class RandomizationConfig:
    """Per-reset domain randomisation (paper Appendix C)."""

    enabled: bool = True
    object_mass: tuple[float, float] = (0.01, 0.05)       # kg
    object_friction: tuple[float, float] = (0.3, 3.0)
    scale_bins: int = 5            # object scales: evenly spaced values over the set's scale range
    kp_scale: tuple[float, float] = (0.9, 1.1)
    kd_scale: tuple[float, float] = (0.9, 1.1)
    disturbance_scale: float = 2.0  # force magnitude = scale * object mass (N per kg)
    disturbance_prob: float = 0.25  # per control step, probability of resampling the force
    joint_noise: float = 0.005      # rad, uniform +- noise on measured joint positions

    def __post_init__(self) -> None:
        for name in ("object_mass", "object_friction", "kp_scale", "kd_scale"):
            lo, hi = getattr(self, name)
            if not (0 < lo <= hi):
                raise ValueError(f"randomization.{name}: need 0 < low <= high, got {(lo, hi)}")
        if self.scale_bins < 1:
            raise ValueError("randomization.scale_bins must be >= 1")
        if not 0.0 <= self.disturbance_prob <= 1.0:
            raise ValueError("randomization.disturbance_prob must be in [0, 1]")


@dataclass
class EnvConfig:
    """Everything that defines a batch of rotation environments."""

    num_envs: int = 64
    nthread: int = 2
    object_set: str = "cylinders"
    object_names: list[str] | None = None    # restrict the set to these shape names
    domain: Any = "nominal"                  # preset name, path to a domain YAML, or a mapping
    wrist: Any = "random"                    # random | named | one name | list of names/3-vectors
    axes: Any = "all"                        # x | y | z | general | all | +z ... | list of 3-vectors
    episode_steps: int = 400                 # 20 s at 20 Hz
    action_scale: float = ACTION_SCALE       # a_t = a_{t-1} + action_scale * action
    pose_action_range: float | None = None   # rad; set: the action is a pose around the episode's first
                                             # targets, reached at <= action_scale per step (env docstring)
    deploy_history: int = 10                 # T
    privileged_history: int = 3
    privileged_displacement: bool = True     # the oracle sees the object's shift from its start pose
                                             # (observations.privileged_layout; False before 2026-12-02)
    privileged_grasp_pose: bool = False      # the oracle sees the joint positions at reset, from which the
                                             # reward's pose term is measured (observations.privileged_layout)
    drop_distance: float = 0.05              # m from where the object started: out of the hand
    max_sag: float | None = 0.02             # m the object may sink along gravity (Hora's z threshold): a
                                             # grasp that lets it settle into the palm ends the episode
    max_object_speed: float = 5.0            # m/s; faster = physics blow-up, env is reset
    gravity_start: float = 1.0               # gravity curriculum: scale of gravity at the first step ...
    gravity_ramp_steps: int = 0              # ... rising linearly to 1 over this many control steps (0: off)
    goal_mode: bool = False                  # goal-oriented mode: random goal pose, axis towards it
    goal_success_angle: float = 0.1 * math.pi
    grasp_dir: str = "~/.cache/dexndm/grasps"
    grasp_generate: bool = True              # build missing grasp caches on first use
    ungraspable: str = "error"               # an (object, scale, wrist) with no stable grasp: "error" stops,
                                             # "skip" draws another (object, scale) and records the pair
                                             # (TaskSampler.ungraspable; evaluation reports it)
    seed: int = 0
    grasp: GraspConfig = field(default_factory=GraspConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)

    def __post_init__(self) -> None:
        if isinstance(self.grasp, dict):
            self.grasp = _build(GraspConfig, self.grasp, "grasp")
        if isinstance(self.reward, dict):
            self.reward = _build(RewardConfig, self.reward, "reward")
        if isinstance(self.randomization, dict):
            self.randomization = _build(RandomizationConfig, self.randomization, "randomization")
        if self.num_envs < 1:
            raise ValueError("env.num_envs must be >= 1")
        if self.episode_steps < 1:
            raise ValueError("env.episode_steps must be >= 1")
        if self.max_sag is not None and not self.max_sag > 0:
            raise ValueError(f"env.max_sag must be > 0 (metres) or null, got {self.max_sag}")
        if not 0.0 <= self.gravity_start <= 1.0 or self.gravity_ramp_steps < 0:
            raise ValueError(f"env.gravity_start must be in [0, 1] and env.gravity_ramp_steps >= 0, got "
                             f"{self.gravity_start}, {self.gravity_ramp_steps}")
        if self.pose_action_range is not None and not self.pose_action_range > 0:
            raise ValueError(f"env.pose_action_range must be > 0 (rad) or null, got {self.pose_action_range}")
        if self.ungraspable not in UNGRASPABLE_MODES:
            raise ValueError(f"env.ungraspable must be one of {UNGRASPABLE_MODES}, got {self.ungraspable!r}")
        if self.deploy_history < 1 or self.privileged_history < 1:
            raise ValueError("env.deploy_history and env.privileged_history must be >= 1")

    @property
    def grasp_path(self) -> Path:
        return Path(self.grasp_dir).expanduser()

    @classmethod
    def from_dict(cls, data: dict | None) -> "EnvConfig":
        return _build(cls, dict(data or {}), "env")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def with_overrides(env: dict, items: list[str]) -> dict:
    """``env`` (an ``EnvConfig`` dict) with dotted ``KEY=VALUE`` overrides applied, values read as
    YAML (``drop_distance=0.1``, ``grasp.palm_blend=[0.8,1.0]``); the result is validated, and an
    unknown key raises ``ValueError`` naming it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError

    base = OmegaConf.create(EnvConfig.from_dict(env).to_dict())
    OmegaConf.set_struct(base, True)
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(list(items)))
    except ConfigKeyError as exc:
        raise ValueError(f"env override {items}: {str(exc).splitlines()[0]}; valid keys: {sorted(base)}") from None
    out = OmegaConf.to_container(merged)
    EnvConfig.from_dict(out)
    return out


def grasp_preset_overrides(name: str) -> list[str]:
    """The ``conf/grasp/<name>.yaml`` preset as ``grasp.KEY=VALUE`` items for ``with_overrides``, so scripts
    outside Hydra (``experiments/eval_oracle.py --grasp``) read the preset instead of retyping its values."""
    from importlib import resources

    from omegaconf import OmegaConf

    folder = resources.files("dexndm.conf") / "grasp"
    names = sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))
    if name not in names:
        raise ValueError(f"grasp preset {name!r} not found; presets in dexndm/conf/grasp: {names}")
    preset = OmegaConf.to_container(OmegaConf.create((folder / f"{name}.yaml").read_text()))
    return [f"grasp.{key}={json.dumps(value)}" for key, value in preset.items()]   # JSON values are YAML


def _build(cls, data: dict, where: str):
    return from_mapping(cls, data, where, _TUPLE_KEYS)


_TUPLE_KEYS = frozenset({"object_mass", "object_friction", "kp_scale", "kd_scale", "pre_close", "squeeze", "palm_blend"})
