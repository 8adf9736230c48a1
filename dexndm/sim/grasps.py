"""Grasp caches: stable initial grasps per object, scale and wrist orientation.

Following Hora/DexNDM (Appendix C, "Grasping Pose Generation"): perturb the canonical
pose by +-0.25 rad, open it a little, place the object (random orientation) between
the fingertips' convergence point and the palm, close the hand on it without gravity
(object damped), then switch gravity on in the requested wrist orientation and hold
with zero action, as an episode starts.  A grasp is kept when the object stays within ``max_shift`` of where
it settled and at least ``min_tip_contacts`` fingertips touch it.

A cache row is 16 joint positions, 16 joint targets (hardware order; the targets grip
beyond contact, as a hand holding an object does) and 7 object pose values (position
in the hand frame, quaternion w x y z).  Caches are ``.npz`` files keyed by the shape's
content hash, scale and orientation, so a changed shape never reuses a stale cache.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
from pathlib import Path

import mujoco
import numpy as np

from dexndm.hand import constants as hc
from dexndm.hand.model import HandIndex
from dexndm.sim import quat
from dexndm.sim.domain import Domain
from dexndm.sim.objects import ObjectShape
from dexndm.sim.physics import RolloutPhysics
from dexndm.sim.scene import OBJECT_BODY, SensorLayout, build_object_model, fingertip_centroids, palm_center

CACHE_VERSION = 3
GRASP_MASS = 0.03          # kg, mid-range object mass used while generating
GRASP_FRICTION = 0.8       # object friction used while generating (lower half of the DR range)
PERTURBATION = 0.25        # rad, uniform noise on the canonical pose
PRE_CLOSE = (0.0, 0.6)     # rad added to the flexion joints of the base pose (small objects need it)
OPEN = 0.3                 # rad the flexion joints start opened from the base pose
SQUEEZE = (0.1, 0.8)       # rad the targets lie beyond the base pose (the grip)
PALM_BLEND = (0.0, 0.9)    # object start: this fraction of the way to the palm centre
SETTLE_DAMPING = 0.5       # N s/m on the object while the hand closes (no gravity)
GRASP_ROW = 2 * hc.NUM_JOINTS + 7


def shape_key(shape: ObjectShape) -> str:
    """Stable content hash of a shape (parts and name)."""
    return hashlib.sha1(repr((shape.name, shape.parts)).encode()).hexdigest()[:12]


def cache_path(root: Path, shape: ObjectShape, scale: float, orientation: str) -> Path:
    safe = shape.name.replace("/", "_")
    return Path(root) / shape.category / f"{safe}__{shape_key(shape)}__s{scale:.3f}__{orientation}__v{CACHE_VERSION}.npz"


def set_object_properties(model: mujoco.MjModel, mass: float, friction: float) -> None:
    """Set the object's mass (inertia scaled to match) and sliding friction in place."""
    body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, OBJECT_BODY)
    ratio = mass / model.body_mass[body]
    model.body_mass[body] = mass
    model.body_inertia[body] *= ratio
    geoms = np.flatnonzero(model.geom_bodyid == body)
    model.geom_friction[geoms, 0] = friction


def _tip_contacts(sensors: np.ndarray, layout: SensorLayout) -> np.ndarray:
    """Number of distal links ([N]) in contact, from the per-body contact sensors."""
    contact = sensors[:, layout["contact"]].reshape(len(sensors), len(hc.CONTACT_BODIES), 4)
    tips = [hc.CONTACT_BODIES.index(b) for b in hc.FINGERTIP_BODIES]
    return (contact[:, tips, 0] > 0).sum(axis=1)


def generate_grasps(
    domain: Domain, shape: ObjectShape, scale: float, gravity_dir: np.ndarray, *,
    n_candidates: int = 64, rng: np.random.Generator | None = None, nthread: int = 2,
    settle_steps: int = 12, hold_steps: int = 40, max_shift: float = 0.01, min_tip_contacts: int = 2,
) -> np.ndarray:
    """Candidate grasps that hold; returns rows [K, 39] (q 16, target 16, object pos 3, quat 4)."""
    rng = rng or np.random.default_rng(0)
    base = build_object_model(domain, shape, scale)
    set_object_properties(base, GRASP_MASS, GRASP_FRICTION)
    obj_joint = mujoco.mj_name2id(base, mujoco.mjtObj.mjOBJ_JOINT, "object_free")
    oq, od = int(base.jnt_qposadr[obj_joint]), int(base.jnt_dofadr[obj_joint])
    closing, held = copy.copy(base), copy.copy(base)
    closing.opt.gravity[:] = 0.0
    # Damp the object while the hand closes so it is positioned, not flung, by the fingers.
    closing.dof_damping[od:od + 3] = SETTLE_DAMPING
    closing.dof_damping[od + 3:od + 6] = SETTLE_DAMPING * 0.01
    held.opt.gravity[:] = domain.gravity * np.asarray(gravity_dir, dtype=float)
    idx = HandIndex.from_model(base)
    layout = SensorLayout.from_model(base)

    n = n_candidates
    mask = hc.FLEXION_MASK
    q0 = hc.clamp_to_limits(hc.CANONICAL_POSE + rng.uniform(-PERTURBATION, PERTURBATION, size=(n, hc.NUM_JOINTS))
                            + rng.uniform(*PRE_CLOSE, size=(n, 1)) * mask)
    start = hc.clamp_to_limits(q0 - OPEN * mask)
    target = hc.clamp_to_limits(q0 + rng.uniform(*SQUEEZE, size=(n, 1)) * mask)
    blend = rng.uniform(*PALM_BLEND, size=(n, 1))
    qpos = np.tile(base.qpos0, (n, 1))
    idx.set_joint_positions(qpos, start)
    qpos[:, oq:oq + 3] = (1 - blend) * fingertip_centroids(target) + blend * palm_center()
    qpos[:, oq + 3:oq + 7] = quat.random(rng, n)

    physics = RolloutPhysics([closing] * n, domain.substeps, nthread)
    try:
        physics.set_state(np.arange(n), qpos, np.zeros((n, base.nv)))
        for k in range(settle_steps):
            alpha = min(1.0, (k + 1) / (0.6 * settle_steps))
            physics.step(np.repeat(((1 - alpha) * start + alpha * target)[:, None, :], domain.substeps, axis=1))
        settled = physics.qpos.copy()
        physics.set_state(np.arange(n), settled, np.zeros((n, base.nv)))
        physics.set_models(np.arange(n), [held] * n)
        ctrl = np.repeat(target[:, None, :], domain.substeps, axis=1)
        sensors = None
        for _ in range(hold_steps):
            _, sensors = physics.step(ctrl)
        final = physics.qpos
        shift = np.linalg.norm(final[:, oq:oq + 3] - settled[:, oq:oq + 3], axis=1)
        ok = (np.isfinite(final).all(axis=1) & (shift < max_shift)
              & (_tip_contacts(sensors[:, -1], layout) >= min_tip_contacts))
    finally:
        physics.close()
    rows = np.concatenate([idx.joint_positions(settled), target, settled[:, oq:oq + 7]], axis=1)
    return rows[ok]


def save_cache(path: Path, rows: np.ndarray, meta: dict) -> None:
    """Write atomically (temp file + rename): an interrupted run never leaves half a cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, grasps=rows, version=CACHE_VERSION, **{k: np.asarray(v) for k, v in meta.items()})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
                 gravity_dir: np.ndarray, *, n_candidates: int = 64, nthread: int = 2, seed: int = 0,
                 rounds: int = 12) -> np.ndarray:
    """Load the cache for (shape, scale, orientation), generating it first if missing."""
    path = cache_path(root, shape, scale, orientation)
    if path.exists():
        return load_cache(path)
    rng = np.random.default_rng([seed, int(shape_key(shape), 16) % (2 ** 31), int(scale * 1000)])
    found = []
    for _ in range(rounds):
        found.append(generate_grasps(domain, shape, scale, gravity_dir, n_candidates=n_candidates, rng=rng,
                                     nthread=nthread))
        if sum(len(f) for f in found) >= max(4, n_candidates // 8):
            break
    rows = np.concatenate(found)
    if len(rows) == 0:
        raise RuntimeError(f"no stable grasp found for {shape.name} at scale {scale:.3f}, orientation {orientation} "
                           f"after {rounds * n_candidates} candidates; the object may not fit the hand")
    save_cache(path, rows, {"object": shape.name, "scale": scale, "orientation": orientation,
                            "gravity_dir": np.asarray(gravity_dir, dtype=float)})
    return rows
