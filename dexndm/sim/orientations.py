"""Wrist orientations and rotation axes, in the hand frame (DexNDM Sec. 4.1, Appendix C).

The hand's base is fixed in the simulator, so a wrist orientation is the direction of
gravity in the hand frame.  Hand frame (= MuJoCo world frame, see
``dexndm.hand.model.MOUNT_QUAT``): +x from wrist to fingertips, +z the palm normal out
of the grasping side, +y = z x x (from the index towards the ring finger; the thumb
is on the -y side).

Rotation axes: 32 near-uniform unit vectors that include the six principal ones; the
other 26 are the paper's "general rotation axes".
"""

from __future__ import annotations

import functools

import numpy as np

#: Unit gravity direction in the hand frame for each named wrist orientation.
WRIST_ORIENTATIONS: dict[str, tuple[float, float, float]] = {
    "palm_up": (0.0, 0.0, -1.0),    # palm faces up: gravity pushes the object into the palm
    "palm_down": (0.0, 0.0, 1.0),   # palm faces the floor: the object hangs in the fingers
    "thumb_up": (0.0, 1.0, 0.0),    # thumb side (-y) up
    "thumb_down": (0.0, -1.0, 0.0),
    "base_up": (1.0, 0.0, 0.0),     # wrist above, fingers pointing down
    "base_down": (-1.0, 0.0, 0.0),
}
NAMED_ORIENTATIONS: tuple[str, ...] = tuple(WRIST_ORIENTATIONS)

PRINCIPAL_AXES: dict[str, tuple[float, float, float]] = {
    "+x": (1.0, 0.0, 0.0), "-x": (-1.0, 0.0, 0.0),
    "+y": (0.0, 1.0, 0.0), "-y": (0.0, -1.0, 0.0),
    "+z": (0.0, 0.0, 1.0), "-z": (0.0, 0.0, -1.0),
}
AXIS_GROUPS: tuple[str, ...] = ("x", "y", "z", "general", "all")


@functools.lru_cache(maxsize=1)
def all_axes() -> np.ndarray:
    """The 32 rotation axes [32, 3]: the six principal axes first, then 26 general ones.

    Deterministic: a Fibonacci sphere seeds the 26 free points, then projected repulsion
    (principal axes held fixed) spreads them near-uniformly (Thomson-like problem).
    """
    fixed = np.array(list(PRINCIPAL_AXES.values()))
    n_free = 26
    i = np.arange(n_free) + 0.5
    phi = np.arccos(1 - 2 * i / n_free)
    theta = np.pi * (1 + 5 ** 0.5) * i
    free = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)
    for _ in range(500):
        pts = np.concatenate([fixed, free])
        diff = free[:, None, :] - pts[None, :, :]
        dist = np.linalg.norm(diff, axis=-1)
        dist[np.arange(n_free), np.arange(n_free) + len(fixed)] = np.inf
        force = (diff / dist[..., None] ** 3).sum(axis=1)
        force -= (force * free).sum(-1, keepdims=True) * free  # tangent part only
        free = free + 0.01 * force / max(np.abs(force).max(), 1e-9)
        free /= np.linalg.norm(free, axis=1, keepdims=True)
    return np.concatenate([fixed, free])


def axes_for(group: str | list) -> np.ndarray:
    """Axes of a group ([K, 3]): ``x`` (+-x), ``y``, ``z``, ``general`` (26), ``all`` (32),
    a principal axis name like ``+z``, or an explicit list of 3-vectors (normalised)."""
    axes = all_axes()
    if isinstance(group, str):
        if group in PRINCIPAL_AXES:
            return np.array([PRINCIPAL_AXES[group]])
        if group in ("x", "y", "z"):
            return np.array([PRINCIPAL_AXES[f"+{group}"], PRINCIPAL_AXES[f"-{group}"]])
        if group == "general":
            return axes[6:].copy()
        if group == "all":
            return axes.copy()
        raise ValueError(f"unknown axis group {group!r}; use one of {AXIS_GROUPS}, a principal axis "
                         f"({', '.join(PRINCIPAL_AXES)}) or a list of 3-vectors")
    arr = np.asarray(group, dtype=float).reshape(-1, 3)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if np.any(norms < 1e-9):
        raise ValueError("a rotation axis must be non-zero")
    return arr / norms


def gravity_directions(spec: str | list) -> np.ndarray | None:
    """Named wrist orientations ([K, 3] unit gravity directions), or None for ``random``.

    ``spec`` is ``random``, ``named`` (all six), one name, or a list of names/3-vectors.
    """
    if isinstance(spec, str):
        if spec == "random":
            return None
        if spec == "named":
            return np.array(list(WRIST_ORIENTATIONS.values()))
        spec = [spec]
    out = []
    for item in spec:
        if isinstance(item, str):
            if item not in WRIST_ORIENTATIONS:
                raise ValueError(f"unknown wrist orientation {item!r}; use one of {NAMED_ORIENTATIONS}, "
                                 "'named', 'random' or a 3-vector")
            out.append(WRIST_ORIENTATIONS[item])
        else:
            v = np.asarray(item, dtype=float)
            if v.shape != (3,) or np.linalg.norm(v) < 1e-9:
                raise ValueError(f"a wrist orientation vector must be a non-zero 3-vector, got {item!r}")
            out.append(v / np.linalg.norm(v))
    return np.array(out, dtype=float)


def sample_unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform random directions on the sphere ([n, 3])."""
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def orientation_quat(gravity_dir: np.ndarray) -> np.ndarray:
    """Wrist orientation as a quaternion ([..., 4], w x y z): the rotation taking the
    hand frame's -z (palm-up gravity) onto ``gravity_dir``; used in observations."""
    g = np.asarray(gravity_dir, dtype=float)
    g = g / np.linalg.norm(g, axis=-1, keepdims=True)
    ref = np.broadcast_to(np.array([0.0, 0.0, -1.0]), g.shape)
    axis = np.cross(ref, g)
    w = 1.0 + (ref * g).sum(-1, keepdims=True)
    q = np.concatenate([w, axis], axis=-1)
    degenerate = w[..., 0] < 1e-9  # opposite vectors: rotate pi about x
    q[degenerate] = np.array([0.0, 1.0, 0.0, 0.0])
    return q / np.linalg.norm(q, axis=-1, keepdims=True)
