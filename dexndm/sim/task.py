"""What each environment of a batch holds: object, scale, wrist orientation, axis, physics.

``TaskSampler`` draws a fresh episode for every environment being reset: an object and
a scale bin from the object set, a wrist orientation (gravity direction), a rotation
axis, randomised physics (object mass and friction, PD gains; paper Appendix C) and
an initial grasp from the cache.  Compiled models are cached per (object, scale) and
copied per environment, so a reset costs a model copy, not a compile.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import mujoco
import numpy as np

from dexndm.hand import constants as hc
from dexndm.hand.model import HandIndex
from dexndm.sim import grasps as grasp_cache
from dexndm.sim import orientations as ori
from dexndm.sim.config import EnvConfig
from dexndm.sim.domain import Domain
from dexndm.sim.grasps import set_object_properties
from dexndm.sim.objects import object_set
from dexndm.sim.scene import build_object_model

#: Grasps generated palm-down serve every random wrist orientation (paper Appendix C).
RANDOM_WRIST_GRASPS = "palm_down"


@dataclass
class Episode:
    """Per-environment draws for the environments being reset (arrays over those envs)."""

    object_index: np.ndarray   # [R]
    scale: np.ndarray          # [R]
    gravity_dir: np.ndarray    # [R, 3]
    axis: np.ndarray           # [R, 3]
    grasp: np.ndarray          # [R, 39]: q 16, target 16, object pose 7
    object_mass: np.ndarray    # [R]
    models: list


class TaskSampler:
    def __init__(self, cfg: EnvConfig, domain: Domain):
        self.cfg = cfg
        self.domain = domain
        shapes = object_set(cfg.object_set)
        if cfg.object_names:
            by_name = {s.name: s for s in shapes}
            missing = [n for n in cfg.object_names if n not in by_name]
            if missing:
                raise ValueError(f"env.object_names: {missing} not in set {cfg.object_set!r}; "
                                 f"available: {sorted(by_name)}")
            shapes = [by_name[n] for n in cfg.object_names]
        self.shapes = shapes
        lo, hi = shapes[0].scale_range
        bins = cfg.randomization.scale_bins if cfg.randomization.enabled else 1
        self.scales = np.linspace(lo, hi, bins) if bins > 1 and hi > lo else np.array([(lo + hi) / 2])
        self.named_gravity = ori.gravity_directions(cfg.wrist)   # None = random
        self.wrist_names = self._wrist_names(cfg.wrist)
        self.axes = ori.axes_for(cfg.axes)
        self._models: dict[tuple[int, int], mujoco.MjModel] = {}
        self._grasps: dict[tuple[int, int, str], np.ndarray] = {}
        self._ungraspable: set[tuple[int, int, str]] = set()
        template = self.model(0, 0)
        self.hand = HandIndex.from_model(template)
        self.object_body = mujoco.mj_name2id(template, mujoco.mjtObj.mjOBJ_BODY, "object")
        self.object_qpos = int(template.jnt_qposadr[mujoco.mj_name2id(template, mujoco.mjtObj.mjOBJ_JOINT, "object_free")])
        self.object_dof = int(template.jnt_dofadr[mujoco.mj_name2id(template, mujoco.mjtObj.mjOBJ_JOINT, "object_free")])

    @staticmethod
    def _wrist_names(spec) -> list[str] | None:
        """Grasp-cache key for each named orientation (None for random)."""
        if spec == "random":
            return None
        if spec == "named":
            return list(ori.NAMED_ORIENTATIONS)
        items = [spec] if isinstance(spec, str) else list(spec)
        return [item if isinstance(item, str) else RANDOM_WRIST_GRASPS for item in items]

    def model(self, obj: int, scale_bin: int) -> mujoco.MjModel:
        key = (obj, scale_bin)
        if key not in self._models:
            self._models[key] = build_object_model(self.domain, self.shapes[obj], float(self.scales[scale_bin]))
        return self._models[key]

    def grasps(self, obj: int, scale_bin: int, wrist: str) -> np.ndarray:
        key = (obj, scale_bin, wrist)
        if key not in self._grasps:
            shape, scale = self.shapes[obj], float(self.scales[scale_bin])
            gravity_dir = np.array(ori.WRIST_ORIENTATIONS[wrist])
            path = grasp_cache.cache_path(self.cfg.grasp_path, shape, scale, wrist, self.cfg.grasp,
                                          self.domain, gravity_dir)
            if not (path.exists() or grasp_cache.no_grasp_marker(path).exists()) and not self.cfg.grasp_generate:
                raise FileNotFoundError(f"no grasp cache at {path}; run `dexndm grasps env.object_set={shape.category}` "
                                        "with the same env.domain, or set env.grasp_generate=true")
            self._grasps[key] = grasp_cache.ensure_cache(
                self.cfg.grasp_path, self.domain, shape, scale, wrist, gravity_dir, cfg=self.cfg.grasp,
                nthread=self.cfg.nthread)
        return self._grasps[key]

    def _graspable(self, rng: np.random.Generator, obj: np.ndarray, sbin: np.ndarray, k: int,
                   wrist: str) -> np.ndarray:
        """The grasp rows for env ``k``'s (object, scale bin); with ``env.ungraspable=skip`` a pair
        without a stable grasp is recorded in ``self.ungraspable`` and ``obj[k]``, ``sbin[k]`` are
        redrawn (in place) until a graspable pair comes up.  The redraws depend only on ``rng`` and
        on which pairs are ungraspable, so every policy evaluated on a seed sees the same episodes."""
        pairs = len(self.shapes) * len(self.scales)
        while True:
            key = (int(obj[k]), int(sbin[k]), wrist)
            if key not in self._ungraspable:
                try:
                    return self.grasps(*key)
                except grasp_cache.NoGraspFound:
                    if self.cfg.ungraspable != "skip":
                        raise
                    self._ungraspable.add(key)
            if sum(1 for (_, _, w) in self._ungraspable if w == wrist) == pairs:
                raise grasp_cache.NoGraspFound(
                    f"no object of set {self.cfg.object_set!r} has a stable grasp at any scale for wrist {wrist!r} "
                    f"(skipped: {self.ungraspable}); loosen env.grasp")
            obj[k], sbin[k] = rng.integers(len(self.shapes)), rng.integers(len(self.scales))

    @property
    def ungraspable(self) -> list[str]:
        """The (object, scale, wrist) draws skipped for want of a stable grasp, as
        ``"name@scale/wrist"`` strings (sorted)."""
        return sorted(f"{self.shapes[o].name}@{self.scales[b]:.3f}/{w}" for o, b, w in self._ungraspable)

    def sample(self, rng: np.random.Generator, n: int, gravity_scale: float = 1.0) -> Episode:
        """Draw ``n`` episodes (models are fresh copies, safe to modify); ``gravity_scale`` scales
        the domain's gravity (a curriculum; the wrist orientation, i.e. its direction, is unchanged)."""
        dr = self.cfg.randomization
        obj = rng.integers(len(self.shapes), size=n)
        sbin = rng.integers(len(self.scales), size=n)
        if self.named_gravity is None:
            gravity = ori.sample_unit_vectors(rng, n)
            wrist_keys = [RANDOM_WRIST_GRASPS] * n
        else:
            pick = rng.integers(len(self.named_gravity), size=n)
            gravity = self.named_gravity[pick]
            wrist_keys = [self.wrist_names[i] for i in pick]
        axis = self.axes[rng.integers(len(self.axes), size=n)]
        if dr.enabled:
            mass = rng.uniform(*dr.object_mass, size=n) * self.domain.object_mass_scale
            friction = rng.uniform(*dr.object_friction, size=n) * self.domain.object_friction_scale
            kp_scale = rng.uniform(*dr.kp_scale, size=(n, hc.NUM_JOINTS))
            kd_scale = rng.uniform(*dr.kd_scale, size=(n, hc.NUM_JOINTS))
        else:
            mass = np.full(n, np.mean(dr.object_mass)) * self.domain.object_mass_scale
            friction = np.full(n, 1.0) * self.domain.object_friction_scale
            kp_scale = kd_scale = np.ones((n, hc.NUM_JOINTS))
        models, grasp_rows = [], np.empty((n, grasp_cache.GRASP_ROW))
        act = self.hand.actuator
        for k in range(n):
            rows = self._graspable(rng, obj, sbin, k, wrist_keys[k])
            grasp_rows[k] = rows[rng.integers(len(rows))]
            model = copy.copy(self.model(int(obj[k]), int(sbin[k])))
            model.opt.gravity[:] = gravity_scale * self.domain.gravity * gravity[k]
            set_object_properties(model, float(mass[k]), float(friction[k]))
            kp = self.domain.kp * kp_scale[k]
            model.actuator_gainprm[act, 0] = kp
            model.actuator_biasprm[act, 1] = -kp
            model.actuator_biasprm[act, 2] = -self.domain.kd * kd_scale[k]
            models.append(model)
        return Episode(obj, self.scales[sbin], gravity, axis, grasp_rows, mass, models)
