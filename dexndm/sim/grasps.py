"""Grasp caches: stable initial grasps per object, scale and wrist orientation.

Following Hora/DexNDM (Appendix C, "Grasping Pose Generation"): perturb the canonical
pose by +-0.25 rad, open it a little, place the object (random orientation) near the
fingertips' convergence point, close the hand on it without gravity (object damped),
then switch gravity on in the requested wrist orientation and hold with zero action,
as an episode starts.  A grasp is kept when the object stays within ``max_shift`` of
where it settled, at least ``min_tip_contacts`` fingertips touch it (the thumb among
them when ``require_thumb``) and, unless ``allow_palm_contact``, the palm does not.  A
shape/scale with no such grasp (small or odd objects) falls back to ``GraspConfig.relaxed``
(recorded as ``relaxed`` in the cache file) rather than stopping training or evaluation.

Fingertip grasps are what make rotation learnable: power grasps (object pressed into
the palm, fingers wrapped round it, which a deeper squeeze and a start closer to the
palm produce) hold well but barely move under exploration noise.  Measured here on
cuboids, palm up, 400 steps of random actions (std 1): the radians rotated about +z
per episode spread 0.36 rad with power grasps against 0.93 rad with these defaults.
All knobs live in ``GraspConfig``; its hash is part of the cache file name.

A cache row is 16 joint positions, 16 joint targets (hardware order; the targets grip
beyond contact, as a hand holding an object does) and 7 object pose values (position
in the hand frame, quaternion w x y z).  Caches are ``.npz`` files keyed by the shape's
content hash, scale, orientation, grasp settings and the dynamics they were tested under
(``physics_key``: domain parameters and gravity direction), so a changed shape or domain
never reuses a stale cache (a zero-gravity cache once served a run with gravity).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from dexndm.files import atomic_path
from dexndm.hand import constants as hc
from dexndm.hand.model import HandIndex
from dexndm.sim import quat
from dexndm.sim.domain import Domain
from dexndm.sim.objects import ObjectShape
from dexndm.sim.physics import RolloutPhysics
from dexndm.sim.scene import OBJECT_BODY, SensorLayout, build_object_model, fingertip_centroids, palm_center

CACHE_VERSION = 5  # v5: fingertip and palm contacts count against the object only (v4 counted tip-on-tip)
GRASP_ROW = 2 * hc.NUM_JOINTS + 7
#: What ``GraspConfig.relaxed`` changes.
RELAXED = {"pre_close": (0.0, 0.6), "squeeze": (0.1, 0.8), "palm_blend": (0.0, 0.9), "min_tip_contacts": 2,
           "require_thumb": False, "allow_palm_contact": True}


@dataclass
class GraspConfig:
    """How candidate grasps are made and which are kept (ranges are uniform [low, high])."""

    candidates: int = 64                          # candidates per generation round
    rounds: int = 12                              # rounds tried before giving up
    min_grasps: int = 8                           # stop generating once this many are kept
    mass: float = 0.03                            # kg, object mass while generating
    friction: float = 0.8                         # object friction while generating
    perturbation: float = 0.25                    # rad, uniform noise on the canonical pose
    pre_close: tuple[float, float] = (0.0, 0.2)   # rad added to the flexion joints of the base pose
    open: float = 0.3                             # rad the flexion joints start opened from the base pose
    squeeze: tuple[float, float] = (0.05, 0.3)    # rad the targets lie beyond the base pose (the grip)
    palm_blend: tuple[float, float] = (0.0, 0.2)  # object start: this fraction of the way to the palm centre
    settle_damping: float = 0.5                   # N s/m on the object while the hand closes (no gravity)
    settle_steps: int = 12                        # control steps closing the hand
    hold_steps: int = 40                          # control steps holding under gravity
    max_shift: float = 0.01                       # m the object may move while held
    min_tip_contacts: int = 3                     # fingertips touching the object at the end
    require_thumb: bool = True                    # the thumb tip among them
    allow_palm_contact: bool = False              # keep grasps where the object touches the palm
    seed: int = 0                                 # candidates' random stream (a cache never depends on the env seed)
    fallback: bool = True                         # none found: retry with RELAXED (power grasps allowed)

    def __post_init__(self) -> None:
        for name in ("pre_close", "squeeze", "palm_blend"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"grasp.{name}: need low <= high, got {(lo, hi)}")
            setattr(self, name, (float(lo), float(hi)))
        if not 0.0 <= self.palm_blend[0] and self.palm_blend[1] <= 1.0:
            raise ValueError("grasp.palm_blend must lie in [0, 1]")
        if min(self.candidates, self.rounds, self.min_grasps, self.settle_steps, self.hold_steps) < 1:
            raise ValueError("grasp.candidates, rounds, min_grasps, settle_steps and hold_steps must be >= 1")
        if not 1 <= self.min_tip_contacts <= len(hc.FINGERTIP_BODIES):
            raise ValueError(f"grasp.min_tip_contacts must be in 1..{len(hc.FINGERTIP_BODIES)}")
        if self.mass <= 0 or self.friction <= 0 or self.max_shift <= 0:
            raise ValueError("grasp.mass, grasp.friction and grasp.max_shift must be > 0")

    def relaxed(self) -> "GraspConfig":
        """The fallback for shapes/scales with no fingertip grasp: wrap-around grasps touching the
        palm, two fingertips, deeper squeeze (what the v3 caches used for every object)."""
        return dataclasses.replace(self, **RELAXED, fallback=False)

    def key(self) -> str:
        """Short hash of every setting that changes which grasps are generated."""
        return hashlib.sha1(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:8]


class NoGraspFound(RuntimeError):
    """The grasp search found no stable grasp for an (object, scale, wrist orientation)."""


def shape_key(shape: ObjectShape) -> str:
    """Stable content hash of a shape (parts and name)."""
    return hashlib.sha1(repr((shape.name, shape.parts)).encode()).hexdigest()[:12]


def physics_key(domain: Domain, gravity_dir: np.ndarray) -> str:
    """Short hash of the dynamics a grasp was tested under: every domain parameter (its name and
    description aside) and the gravity direction.  A grasp that holds under one domain need not
    hold under another (zero gravity, weaker gains), so caches are never shared between them."""
    params = {k: v for k, v in domain.to_dict().items() if k not in ("name", "description")}
    params["gravity_dir"] = np.round(np.asarray(gravity_dir, dtype=float), 6).tolist()
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]


def cache_path(root: Path, shape: ObjectShape, scale: float, orientation: str, cfg: GraspConfig | None,
               domain: Domain, gravity_dir: np.ndarray) -> Path:
    """Where the grasps for this object, scale, wrist, grasp settings and dynamics live."""
    safe = shape.name.replace("/", "_")
    g = (cfg or GraspConfig()).key()
    d = physics_key(domain, gravity_dir)
    return (Path(root) / shape.category
            / f"{safe}__{shape_key(shape)}__s{scale:.3f}__{orientation}__g{g}__d{d}__v{CACHE_VERSION}.npz")


def no_grasp_marker(path: Path) -> Path:
    """Beside a cache path: the record that its search found nothing (so no process searches again)."""
    return path.with_suffix(".nograsp")


def set_object_properties(model: mujoco.MjModel, mass: float, friction: float) -> None:
    """Set the object's mass (inertia scaled to match) and sliding friction in place."""
    body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, OBJECT_BODY)
    ratio = mass / model.body_mass[body]
    model.body_mass[body] = mass
    model.body_inertia[body] *= ratio
    geoms = np.flatnonzero(model.geom_bodyid == body)
    model.geom_friction[geoms, 0] = friction


def _contacts_ok(sensors: np.ndarray, layout: SensorLayout, cfg: GraspConfig) -> np.ndarray:
    """Whether each grasp's contacts ([N] bool) meet ``cfg``, from the fingertip-object and
    palm-object contact sensors (not the per-body ones, which also count a fingertip pressed on
    another: up to cache v4 that passed grasps holding the object with two tips)."""
    tips = sensors[:, layout["tip_object_contact"]] > 0
    ok = tips.sum(axis=1) >= cfg.min_tip_contacts
    if cfg.require_thumb:
        ok &= tips[:, hc.FINGERTIP_BODIES.index("th_ds")]
    if not cfg.allow_palm_contact:
        ok &= sensors[:, layout["palm_object_contact"]][:, 0] <= 0
    return ok


def generate_grasps(
    domain: Domain, shape: ObjectShape, scale: float, gravity_dir: np.ndarray, *,
    cfg: GraspConfig | None = None, rng: np.random.Generator | None = None, nthread: int = 2,
) -> np.ndarray:
    """One round of ``cfg.candidates`` candidates; returns the rows that hold [K, 39]
    (q 16, target 16, object pos 3, quat 4)."""
    cfg = cfg or GraspConfig()
    rng = rng or np.random.default_rng(0)
    base = build_object_model(domain, shape, scale)
    set_object_properties(base, cfg.mass, cfg.friction)
    obj_joint = mujoco.mj_name2id(base, mujoco.mjtObj.mjOBJ_JOINT, "object_free")
    oq, od = int(base.jnt_qposadr[obj_joint]), int(base.jnt_dofadr[obj_joint])
    closing, held = copy.copy(base), copy.copy(base)
    closing.opt.gravity[:] = 0.0
    # Damp the object while the hand closes so it is positioned, not flung, by the fingers.
    closing.dof_damping[od:od + 3] = cfg.settle_damping
    closing.dof_damping[od + 3:od + 6] = cfg.settle_damping * 0.01
    held.opt.gravity[:] = domain.gravity * np.asarray(gravity_dir, dtype=float)
    idx = HandIndex.from_model(base)
    layout = SensorLayout.from_model(base)

    n = cfg.candidates
    mask = hc.FLEXION_MASK
    q0 = hc.clamp_to_limits(hc.CANONICAL_POSE + rng.uniform(-cfg.perturbation, cfg.perturbation,
                                                            size=(n, hc.NUM_JOINTS))
                            + rng.uniform(*cfg.pre_close, size=(n, 1)) * mask)
    start = hc.clamp_to_limits(q0 - cfg.open * mask)
    target = hc.clamp_to_limits(q0 + rng.uniform(*cfg.squeeze, size=(n, 1)) * mask)
    blend = rng.uniform(*cfg.palm_blend, size=(n, 1))
    qpos = np.tile(base.qpos0, (n, 1))
    idx.set_joint_positions(qpos, start)
    qpos[:, oq:oq + 3] = (1 - blend) * fingertip_centroids(target) + blend * palm_center()
    qpos[:, oq + 3:oq + 7] = quat.random(rng, n)

    physics = RolloutPhysics([closing] * n, domain.substeps, nthread)
    try:
        physics.set_state(np.arange(n), qpos, np.zeros((n, base.nv)))
        for k in range(cfg.settle_steps):
            alpha = min(1.0, (k + 1) / (0.6 * cfg.settle_steps))
            physics.step(np.repeat(((1 - alpha) * start + alpha * target)[:, None, :], domain.substeps, axis=1))
        settled = physics.qpos.copy()
        physics.set_state(np.arange(n), settled, np.zeros((n, base.nv)))
        physics.set_models(np.arange(n), [held] * n)
        ctrl = np.repeat(target[:, None, :], domain.substeps, axis=1)
        sensors = None
        for _ in range(cfg.hold_steps):
            _, sensors = physics.step(ctrl)
        final = physics.qpos
        shift = np.linalg.norm(final[:, oq:oq + 3] - settled[:, oq:oq + 3], axis=1)
        ok = np.isfinite(final).all(axis=1) & (shift < cfg.max_shift) & _contacts_ok(sensors[:, -1], layout, cfg)
    finally:
        physics.close()
    rows = np.concatenate([idx.joint_positions(settled), target, settled[:, oq:oq + 7]], axis=1)
    return rows[ok]


def save_cache(path: Path, rows: np.ndarray, meta: dict) -> None:
    """Write atomically (temp file + rename): an interrupted run never leaves half a cache."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, grasps=rows, version=CACHE_VERSION, **{k: np.asarray(v) for k, v in meta.items()})


def load_cache(path: Path) -> np.ndarray:
    """Read a cache file's grasp rows [K, 39]; a malformed file raises with the fix."""
    try:
        with np.load(path, allow_pickle=False) as data:
            version = int(data["version"])
            rows = np.asarray(data["grasps"], dtype=float)
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"grasp cache {path} is unreadable ({exc}); delete it and run `dexndm grasps` again") from exc
    if version != CACHE_VERSION:
        raise ValueError(f"grasp cache {path} has version {version}, this dexndm reads {CACHE_VERSION}; "
                         "delete it and run `dexndm grasps` again")
    if rows.ndim != 2 or rows.shape[1] != GRASP_ROW or len(rows) == 0:
        raise ValueError(f"grasp cache {path} holds rows of shape {rows.shape}, expected [K>0, {GRASP_ROW}]; regenerate it")
    return rows


def ensure_cache(root: Path, domain: Domain, shape: ObjectShape, scale: float, orientation: str,
                 gravity_dir: np.ndarray, *, cfg: GraspConfig | None = None, nthread: int = 2) -> np.ndarray:
    """Load the cache for (shape, scale, orientation, grasp settings, dynamics), generating it first if missing."""
    cfg = cfg or GraspConfig()
    path = cache_path(root, shape, scale, orientation, cfg, domain, gravity_dir)
    if path.exists():
        return load_cache(path)
    marker = no_grasp_marker(path)
    if marker.exists():
        raise NoGraspFound(f"{marker.read_text().strip()} (recorded in {marker}; delete it to search again)")
    rng = np.random.default_rng([cfg.seed, int(shape_key(shape), 16) % (2 ** 31), int(scale * 1000)])
    found = []
    for _ in range(cfg.rounds):
        found.append(generate_grasps(domain, shape, scale, gravity_dir, cfg=cfg, rng=rng, nthread=nthread))
        if sum(len(f) for f in found) >= cfg.min_grasps:
            break
    rows = np.concatenate(found)
    relaxed, tried = False, len(found) * cfg.candidates
    if len(rows) == 0 and cfg.fallback:
        loose = cfg.relaxed()
        for _ in range(cfg.rounds):
            found.append(generate_grasps(domain, shape, scale, gravity_dir, cfg=loose, rng=rng, nthread=nthread))
            if sum(len(f) for f in found) >= cfg.min_grasps:
                break
        rows, relaxed, tried = np.concatenate(found), True, len(found) * cfg.candidates
    if len(rows) == 0:
        message = (f"no stable grasp found for {shape.name} at scale {scale:.3f}, orientation {orientation} "
                   f"after {tried} candidates{' (relaxed settings included)' if relaxed else ''}; "
                   "the object may not fit the hand. "
                   "Loosen env.grasp (e.g. env.grasp.allow_palm_contact=true, env.grasp.min_tip_contacts=2, "
                   "a wider env.grasp.squeeze), drop this scale, or set env.ungraspable=skip to draw "
                   "another object or scale in its place (the skipped pairs are reported).")
        with atomic_path(marker) as tmp:
            tmp.write_text(message + "\n")
        raise NoGraspFound(message)
    save_cache(path, rows, {"object": shape.name, "scale": scale, "orientation": orientation,
                            "gravity_dir": np.asarray(gravity_dir, dtype=float), "relaxed": relaxed,
                            "grasp_config": json.dumps(dataclasses.asdict(cfg), sort_keys=True)})
    return rows
