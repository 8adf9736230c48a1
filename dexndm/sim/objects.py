"""Procedural object sets for in-hand rotation (DexNDM, Appendix C, Table 9).

The paper trains on cylinders, cuboids, long cuboids, small cylinders and 120
"DexEnv" composite objects, and tests on an unseen set.  Meshes cannot be
downloaded, so every object is a composition of MuJoCo primitive geoms (box,
cylinder, capsule, ellipsoid, sphere) drawn from a seeded RNG and uniformly
rescaled until its minimum bounding-box extent and aspect ratio (longest /
shortest extent of the unscaled shape) lie in the ranges of Table 9.

Primitives and a fixed slot count, because a batched MuJoCo rollout steps models
that must have identical sizes (``ngeom`` included) across environments: every
object fills exactly ``MAX_PARTS`` geom slots, unused ones being tiny massless
non-colliding spheres.  Sizes follow MuJoCo conventions (box half-extents,
cylinder/capsule ``(radius, half_length, 0)`` along the part's z, sphere
``(radius, 0, 0)``, ellipsoid semi-axes); the object frame is the bbox centre.
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import mujoco
import numpy as np

MAX_PARTS: int = 8
KINDS = ("box", "cylinder", "capsule", "ellipsoid", "sphere")
SETS: tuple[str, ...] = ("cylinders", "cuboids", "long_cuboids", "small_cylinders", "complex", "unseen")
TRAINING_SETS: tuple[str, ...] = SETS[:5]
#: Largest scaled extent (m) that still fits a LEAP hand (~9.5 cm fingertip span).
MAX_SCALED_EXTENT = 0.11
PAD_SIZE = 1e-4

_GEOM_TYPES = {k: getattr(mujoco.mjtGeom, f"mjGEOM_{k.upper()}") for k in KINDS}


def part_geom_type(kind: str) -> mujoco.mjtGeom:
    """MuJoCo geom type of a part kind."""
    if kind not in _GEOM_TYPES:
        raise ValueError(f"unknown part kind {kind!r}; expected one of {KINDS}")
    return _GEOM_TYPES[kind]


# ----------------------------------------------------------------------------- rotations
def _quat_to_mat(q: Sequence[float]) -> np.ndarray:
    m = np.zeros(9)
    mujoco.mju_quat2Mat(m, np.asarray(q, dtype=float) / np.linalg.norm(q))
    return m.reshape(3, 3)


def _quat_z_to(d: Sequence[float]) -> np.ndarray:
    """Quaternion rotating the z axis onto direction ``d``."""
    out = np.zeros(4)
    mujoco.mju_quatZ2Vec(out, np.asarray(d, dtype=float))
    return out


# ----------------------------------------------------------------------------- data types
def _floats(v: Sequence[float], n: int) -> tuple[float, ...]:
    if len(v) != n:
        raise ValueError(f"expected {n} values, got {len(v)}")
    return tuple(float(x) for x in v)


@dataclass(frozen=True)
class Part:
    """One primitive geom of an object, in the object frame."""

    kind: str
    size: tuple[float, float, float]
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown part kind {self.kind!r}; expected one of {KINDS}")
        q = np.asarray(_floats(self.quat, 4))
        object.__setattr__(self, "size", _floats(self.size, 3))
        object.__setattr__(self, "pos", _floats(self.pos, 3))
        object.__setattr__(self, "quat", _floats(q / np.linalg.norm(q), 4))

    def half_extent(self) -> np.ndarray:
        """Exact half-extent [3] of the rotated primitive's axis-aligned bounding box."""
        R = _quat_to_mat(self.quat)
        s = np.asarray(self.size)
        if self.kind == "box":
            return np.abs(R) @ s
        if self.kind == "sphere":
            return np.full(3, s[0])
        if self.kind == "ellipsoid":  # support function of R diag(s) B^3 along e_i
            return np.sqrt(((R * s[None, :]) ** 2).sum(axis=1))
        axis = R[:, 2]  # cylinder / capsule: segment of half-length s[1] along `axis`
        if self.kind == "capsule":
            return s[1] * np.abs(axis) + s[0]
        return s[1] * np.abs(axis) + s[0] * np.sqrt(np.clip(1.0 - axis**2, 0.0, None))

    def volume(self) -> float:
        a, b, c = self.size
        return {
            "box": 8 * a * b * c,
            "sphere": 4 / 3 * math.pi * a**3,
            "ellipsoid": 4 / 3 * math.pi * a * b * c,
            "cylinder": 2 * math.pi * a * a * b,
            "capsule": 2 * math.pi * a * a * b + 4 / 3 * math.pi * a**3,
        }[self.kind]

    def scaled(self, s: float) -> "Part":
        return Part(self.kind, tuple(s * x for x in self.size), tuple(s * x for x in self.pos), self.quat)


def _parts_bbox(parts: Sequence[Part]) -> tuple[np.ndarray, np.ndarray]:
    centres, halves = np.array([p.pos for p in parts]), np.array([p.half_extent() for p in parts])
    return (centres - halves).min(axis=0), (centres + halves).max(axis=0)


@dataclass(frozen=True)
class ObjectShape:
    """A named composite of 1..MAX_PARTS primitives plus its sampling scale range."""

    name: str
    category: str
    parts: tuple[Part, ...]
    scale_range: tuple[float, float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.parts))
        object.__setattr__(self, "scale_range", _floats(self.scale_range, 2))
        if not 1 <= len(self.parts) <= MAX_PARTS:
            raise ValueError(f"{self.name}: {len(self.parts)} parts, expected 1..{MAX_PARTS}")

    def scaled(self, s: float) -> "ObjectShape":
        """Copy with every size and position multiplied by ``s`` (scale_range is kept)."""
        if s <= 0:
            raise ValueError(f"scale must be positive, got {s}")
        return ObjectShape(self.name, self.category, tuple(p.scaled(s) for p in self.parts), self.scale_range)

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact axis-aligned bounding box (lo[3], hi[3]) in the object frame."""
        return _parts_bbox(self.parts)

    def extents(self) -> np.ndarray:
        lo, hi = self.bounding_box()
        return hi - lo

    def aspect_ratio(self) -> float:
        return float(self.extents().max() / self.extents().min())

    def volume(self) -> float:
        """Sum of part volumes (m^3): overlapping regions are counted twice.

        This matches how MuJoCo derives mass from density, so ``density * volume()``
        equals the compiled body mass.
        """
        return float(sum(p.volume() for p in self.parts))


def _recentred(parts: Sequence[Part]) -> list[Part]:
    c = sum(_parts_bbox(parts)) / 2
    return [Part(p.kind, p.size, tuple(np.asarray(p.pos) - c), p.quat) for p in parts]


# ----------------------------------------------------------------------------- part helpers
def _box(center: Sequence[float], dims: Sequence[float], quat=(1, 0, 0, 0)) -> Part:
    """Box from its centre and *full* dimensions."""
    return Part("box", tuple(0.5 * np.asarray(dims)), tuple(center), tuple(quat))


def _segment(kind: str, p0: Sequence[float], p1: Sequence[float], r: float) -> Part:
    """Capsule or cylinder of radius ``r`` whose axis runs from ``p0`` to ``p1``."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    return Part(kind, (r, np.linalg.norm(p1 - p0) / 2, 0.0), tuple((p0 + p1) / 2), tuple(_quat_z_to(p1 - p0)))


def _zcyl(z0: float, z1: float, r: float) -> Part:
    return _segment("cylinder", (0, 0, z0), (0, 0, z1), r)


# ----------------------------------------------------------------------------- complex families
def _animal(rng: np.random.Generator) -> list[Part]:
    """Ellipsoid torso, sphere head, four capsule legs, optional tail."""
    a = rng.uniform(0.03, 0.05)
    b = a * rng.uniform(0.6, 0.85)
    c = b * rng.uniform(0.8, 1.1)
    head_pos = (a * rng.uniform(0.8, 1.0), 0, c * rng.uniform(0.3, 0.8))
    parts = [Part("ellipsoid", (a, b, c)), Part("sphere", (b * rng.uniform(0.7, 1.0), 0, 0), head_pos)]
    r, length = b * rng.uniform(0.2, 0.3), c * rng.uniform(0.8, 1.5)
    parts += [_segment("capsule", (x, y, -0.5 * c), (x, y, -0.5 * c - length), r)
              for x in (0.6 * a, -0.6 * a) for y in (0.55 * b, -0.55 * b)]
    if rng.random() < 0.6:
        parts.append(_segment("capsule", (-0.9 * a, 0, 0.2 * c), (-1.4 * a, 0, 0.7 * c), 0.6 * r))
    return parts


def _truck(rng: np.random.Generator) -> list[Part]:
    """Toy truck: box chassis and cab (optional cargo box) on four cylinder wheels."""
    lx = rng.uniform(0.035, 0.05)
    ly, lz = lx * rng.uniform(0.45, 0.65), lx * rng.uniform(0.2, 0.35)
    cx, cz = lx * rng.uniform(0.25, 0.35), lz * rng.uniform(0.8, 1.3)
    parts = [Part("box", (lx, ly, lz)), Part("box", (cx, 0.9 * ly, cz), (lx - cx, 0, lz + cz))]
    rw, tw = lz * rng.uniform(0.9, 1.4), ly * rng.uniform(0.15, 0.25)
    parts += [_segment("cylinder", (x, y - tw, -lz), (x, y + tw, -lz), rw)
              for x in (0.6 * lx, -0.6 * lx) for y in (ly + 0.5 * tw, -ly - 0.5 * tw)]
    if rng.random() < 0.5:
        parts.append(Part("box", (0.5 * lx, 0.8 * ly, 0.8 * lz), (-0.4 * lx, 0, 1.8 * lz)))
    return parts


def _bunny(rng: np.random.Generator) -> list[Part]:
    """Bunny-like blob: body and head ellipsoids, two tilted ear ellipsoids, sphere tail."""
    a = rng.uniform(0.025, 0.04)
    body = Part("ellipsoid", (a, a * rng.uniform(0.65, 0.85), a * rng.uniform(0.7, 0.9)))
    hp = np.array([0.8 * a, 0, 0.6 * a]) * rng.uniform(0.9, 1.1, 3)
    head = Part("ellipsoid", tuple(a * rng.uniform(0.45, 0.6, 3)), tuple(hp))
    ear_len, tilt = a * rng.uniform(0.35, 0.6), rng.uniform(0.1, 0.5)
    parts = [body, head]
    for sy in (1, -1):  # ears lean back by `tilt` and splay sideways
        q = _quat_z_to((-math.sin(tilt), sy * 0.2, math.cos(tilt)))
        pos = hp + [-0.1 * a, sy * 0.2 * a, 0.4 * a + 0.8 * ear_len]
        parts.append(Part("ellipsoid", (0.12 * a, 0.2 * a, ear_len), tuple(pos), tuple(q)))
    parts.append(Part("sphere", (a * rng.uniform(0.2, 0.3), 0, 0), (-a, 0, 0.1 * a)))
    return parts


def _blob(rng: np.random.Generator) -> list[Part]:
    """Irregular cluster of 3-6 overlapping, randomly oriented ellipsoids."""
    parts: list[Part] = []
    for _ in range(rng.integers(3, 7)):
        size, pos = rng.uniform(0.015, 0.035, 3), np.zeros(3)
        if parts:
            anchor, d = parts[rng.integers(len(parts))], rng.normal(size=3)
            pos = np.asarray(anchor.pos) + d / np.linalg.norm(d) * rng.uniform(0.5, 1.0) * np.mean(anchor.size)
        parts.append(Part("ellipsoid", tuple(size), tuple(pos), tuple(rng.normal(size=4))))
    return parts


def _letter(rng: np.random.Generator) -> list[Part]:
    """L, T, U, Z or plus shape made of box bars of thickness t and depth D."""
    A, B = rng.uniform(0.04, 0.08, 2)
    t, D = min(A, B) * rng.uniform(0.3, 0.5), min(A, B) * rng.uniform(0.5, 1.0)
    kind = rng.integers(5)
    if kind == 0:  # L
        return [_box((A / 2, 0, t / 2), (A, D, t)), _box((t / 2, 0, B / 2), (t, D, B))]
    if kind == 1:  # T
        return [_box((0, 0, B - t / 2), (A, D, t)), _box((0, 0, B / 2), (t, D, B))]
    if kind == 2:  # U
        return [_box((0, 0, t / 2), (A, D, t)), _box((A / 2 - t / 2, 0, B / 2), (t, D, B)),
                _box((t / 2 - A / 2, 0, B / 2), (t, D, B))]
    if kind == 3:  # Z
        return [_box((0, 0, B / 2), (t, D, B)), _box((A / 2 - t / 2, 0, B - t / 2), (A, D, t)),
                _box((t / 2 - A / 2, 0, t / 2), (A, D, t))]
    return [_box((0, 0, 0), (A, D, t)), _box((0, 0, 0), (t, D, B))]  # plus


def _star(rng: np.random.Generator) -> list[Part]:
    """Jack / star: capsules through a sphere hub along 3 orthogonal or 4 tetrahedral axes."""
    r = rng.uniform(0.006, 0.012)
    tetra = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / math.sqrt(3)
    dirs = np.eye(3) if rng.random() < 0.5 else tetra
    return [Part("sphere", (r * rng.uniform(1.3, 2.0), 0, 0))] + [
        _segment("capsule", -h * d, h * d, r) for d, h in zip(dirs, r * rng.uniform(2.0, 5.0, len(dirs)))]


def _tetris(rng: np.random.Generator) -> list[Part]:
    """Polycube: 3-6 unit cubes grown by a random walk on a grid."""
    c, target, cells = rng.uniform(0.02, 0.03), rng.integers(3, 7), [(0, 0, 0)]
    steps = np.concatenate([np.eye(3, dtype=int), -np.eye(3, dtype=int)])
    while len(cells) < target:
        cand = tuple(np.asarray(cells[rng.integers(len(cells))]) + steps[rng.integers(6)])
        if cand not in cells:
            cells.append(cand)
    return [Part("box", (c / 2,) * 3, tuple(c * np.asarray(cell, float))) for cell in cells]


# ----------------------------------------------------------------------------- unseen families
def _egg(rng: np.random.Generator) -> list[Part]:
    """Tri-axial ellipsoid, or an egg (ellipsoid with a sphere bulging one end)."""
    a = rng.uniform(0.02, 0.04)
    if rng.random() < 0.5:
        return [Part("ellipsoid", (a, a * rng.uniform(0.6, 1.0), a * rng.uniform(1.1, 1.8)))]
    c = a * rng.uniform(1.2, 1.6)
    return [Part("ellipsoid", (a, a, c)), Part("sphere", (0.95 * a, 0, 0), (0, 0, -0.3 * c))]


def _mug(rng: np.random.Generator) -> list[Part]:
    """Cylinder mug with a C-shaped handle of three capsules."""
    R = rng.uniform(0.025, 0.04)
    h, rh, d = R * rng.uniform(0.8, 1.3), R * rng.uniform(0.12, 0.2), R * rng.uniform(0.4, 0.7)
    zt, zb = 0.6 * h, -0.6 * h
    return [_zcyl(-h, h, R), _segment("capsule", (0.8 * R, 0, zt), (R + d, 0, zt), rh),
            _segment("capsule", (R + d, 0, zt), (R + d, 0, zb), rh),
            _segment("capsule", (R + d, 0, zb), (0.8 * R, 0, zb), rh)]


def _bottle(rng: np.random.Generator) -> list[Part]:
    """Stubby bottle: body cylinder, ellipsoid shoulder, neck and cap cylinders."""
    R = rng.uniform(0.025, 0.04)
    h = R * rng.uniform(0.6, 1.2)
    rn, hn = R * rng.uniform(0.3, 0.45), R * rng.uniform(0.3, 0.6)
    top = h + 0.6 * R
    return [_zcyl(-h, h, R), Part("ellipsoid", (R, R, 0.8 * R), (0, 0, h)), _zcyl(top - 0.2 * R, top + hn, rn),
            _zcyl(top + hn, top + hn + 0.3 * R, 1.2 * rn)]


def _banana(rng: np.random.Generator) -> list[Part]:
    """Banana-like bent chain of 3-5 capsules along an arc (slightly helical), tapering at the ends."""
    n, r = rng.integers(3, 6), rng.uniform(0.01, 0.02)
    R, lift = r * rng.uniform(1.5, 3.0), r * rng.uniform(0, 2)
    sweep = rng.uniform(math.radians(120), math.radians(220))
    phi = np.linspace(-sweep / 2, sweep / 2, n + 1)
    pts = np.stack([R * np.sin(phi), -R * np.cos(phi), lift * np.linspace(-1, 1, n + 1)], axis=1)
    radii = r * (1 - 0.3 * np.abs(np.linspace(-1, 1, n)))
    return [_segment("capsule", pts[k], pts[k + 1], radii[k]) for k in range(n)]


def _mushroom(rng: np.random.Generator) -> list[Part]:
    """Cylinder stem under a flattened ellipsoid cap, optional ring on the stem."""
    rs = rng.uniform(0.008, 0.015)
    hs, Rc = rs * rng.uniform(1.5, 3.5), rs * rng.uniform(1.8, 3.0)
    parts = [_zcyl(-hs, hs, rs), Part("ellipsoid", (Rc, Rc, Rc * rng.uniform(0.4, 0.7)), (0, 0, hs))]
    if rng.random() < 0.5:
        parts.append(_zcyl(0.2 * hs, 0.3 * hs, 1.5 * rs))
    return parts


def _dumbbell(rng: np.random.Generator) -> list[Part]:
    """Bar along x with one or two disc plates at each end."""
    rb, Rp = rng.uniform(0.005, 0.01), rng.uniform(0.02, 0.035)
    tp, hb = Rp * rng.uniform(0.2, 0.4), Rp * rng.uniform(1.0, 1.8)
    parts = [_segment("cylinder", (-hb, 0, 0), (hb, 0, 0), rb)]
    for s in (1, -1):
        for k in range(1 + int(rng.random() < 0.5)):
            x = s * (hb - tp * (2 * k + 1) / 2)
            parts.append(_segment("cylinder", (x - tp / 2, 0, 0), (x + tp / 2, 0, 0), Rp * (1 - 0.2 * k)))
    return parts


def _torus(rng: np.random.Generator) -> list[Part]:
    """Torus approximated by a ring of 6-8 capsules, tilted in the object frame."""
    n, r = rng.integers(6, 9), rng.uniform(0.006, 0.012)
    R = r * rng.uniform(1.4, 2.5)
    tilt, ang = rng.uniform(math.radians(30), math.radians(60)), 2 * math.pi * np.arange(n + 1) / n
    pts = R * np.stack([np.cos(ang), np.sin(ang) * math.cos(tilt), np.sin(ang) * math.sin(tilt)], axis=1)
    return [_segment("capsule", pts[k], pts[k + 1], r) for k in range(n)]


Family = Callable[[np.random.Generator], list[Part]]
COMPLEX_FAMILIES: dict[str, Family] = {
    "animal": _animal, "truck": _truck, "bunny": _bunny, "blob": _blob,
    "letter": _letter, "star": _star, "tetris": _tetris,
}
UNSEEN_FAMILIES: dict[str, Family] = {
    "egg": _egg, "mug": _mug, "bottle": _bottle, "banana": _banana, "mushroom": _mushroom,
    "dumbbell": _dumbbell, "torus": _torus,
}


# ----------------------------------------------------------------------------- sets
@dataclass(frozen=True)
class SetSpec:
    """Row of Table 9: count, unscaled minimum-extent and aspect ranges, scale range."""

    count: int
    min_extent: tuple[float, float]
    aspect: tuple[float, float]
    scale_range: tuple[float, float]
    max_scaled_extent: float | None = None  # hand-fit limit at the largest scale


SET_SPECS: dict[str, SetSpec] = {
    "cylinders": SetSpec(9, (0.04, 0.04), (1.6, 2.4), (0.70, 0.86)),
    "cuboids": SetSpec(9, (0.064, 0.064), (1.25, 1.5), (0.70, 0.86)),
    "long_cuboids": SetSpec(4, (0.06, 0.08), (2.5, 6.67), (0.5, 0.5)),
    "small_cylinders": SetSpec(9, (0.025, 0.025), (1.92, 2.56), (0.5, 0.6)),
    "complex": SetSpec(120, (0.056, 0.115), (1.05, 2.00), (0.6, 0.7), MAX_SCALED_EXTENT),
    "unseen": SetSpec(26, (0.04, 0.12), (1.0, 2.0), (0.5, 0.6), MAX_SCALED_EXTENT),
}
_MAX_TRIES = 500


def _primitive_set(name: str, spec: SetSpec, rng: np.random.Generator) -> list[list[Part]]:
    """Single cylinders (axis z) or boxes whose aspect ratios span the set's range.

    Cylinders alternate long (length = aspect * diameter) and flat (diameter = aspect
    * length).  Boxes get a random middle extent; for long cuboids the shortest extent
    falls as the aspect rises, so the longest stick is 0.4 m (0.2 m at scale 0.5).
    """
    out = []
    thickness = np.linspace(spec.min_extent[1], spec.min_extent[0], spec.count)
    for i, (d, ar) in enumerate(zip(thickness, np.linspace(*spec.aspect, spec.count))):
        if name.endswith("cylinders"):
            length, diam = (ar * d, d) if i % 2 == 0 else (d, ar * d)
            out.append([Part("cylinder", (diam / 2, length / 2, 0.0))])
        else:
            out.append([Part("box", (d / 2, rng.uniform(d, min(ar, 1.25) * d) / 2, ar * d / 2))])
    return out


def _fit_to_spec(parts: list[Part], spec: SetSpec, rng: np.random.Generator) -> list[Part] | None:
    """Recentre and rescale so the minimum extent lies in range; None if impossible."""
    parts = _recentred(parts)
    lo, hi = _parts_bbox(parts)
    ext, ar = hi - lo, (hi - lo).max() / (hi - lo).min()
    if not spec.aspect[0] + 1e-9 <= ar <= spec.aspect[1] - 1e-9:  # margin for rescaling round-off
        return None
    top = spec.min_extent[1]
    if spec.max_scaled_extent is not None:
        top = min(top, spec.max_scaled_extent / spec.scale_range[1] / ar)
    if top < spec.min_extent[0]:
        return None
    s = rng.uniform(spec.min_extent[0], top) / ext.min()
    return [p.scaled(s) for p in parts]


def _sample(family: Family, spec: SetSpec, rng: np.random.Generator) -> list[Part]:
    """Draw from ``family`` until a shape fits ``spec`` (bounded rejection sampling)."""
    for _ in range(_MAX_TRIES):
        if (fitted := _fit_to_spec(family(rng), spec, rng)) is not None:
            return fitted
    raise RuntimeError(f"{family.__name__} produced no shape within spec after {_MAX_TRIES} tries")


@functools.lru_cache(maxsize=64)
def _object_set(name: str, seed: int) -> tuple[ObjectShape, ...]:
    spec = SET_SPECS[name]
    rng = np.random.default_rng(seed + zlib.crc32(name.encode()))
    if name not in ("complex", "unseen"):
        named = [(f"{i:02d}", p) for i, p in enumerate(_primitive_set(name, spec, rng))]
    else:
        fams = list((COMPLEX_FAMILIES if name == "complex" else UNSEEN_FAMILIES).items())
        width = len(str(spec.count - 1))
        named = []
        for i in range(spec.count):
            fam, fn = fams[i % len(fams)]
            named.append((f"{i:0{width}d}_{fam}", _sample(fn, spec, rng)))
    return tuple(ObjectShape(f"{name}/{suffix}", name, tuple(_recentred(parts)), spec.scale_range)
                 for suffix, parts in named)


def object_set(name: str, seed: int = 0) -> list[ObjectShape]:
    """The shapes of set ``name`` (one of ``SETS``); deterministic in ``(name, seed)``.

    Composite names carry their family, e.g. ``"complex/017_truck"``.
    """
    if name not in SET_SPECS:
        raise ValueError(f"unknown object set {name!r}; valid sets: {', '.join(SETS)}")
    return list(_object_set(name, int(seed)))


# ----------------------------------------------------------------------------- MjSpec
def add_object_geoms(body, shape: ObjectShape, *, density: float | None = None, friction: float = 1.0,
                     rgba=(0.8, 0.5, 0.2, 1.0), name_prefix: str = "object") -> list:
    """Add exactly ``MAX_PARTS`` geoms for ``shape`` to ``body`` (a ``mujoco.MjsBody``).

    One geom per part, then padding slots: spheres of radius ``PAD_SIZE`` at the
    origin with ``contype = conaffinity = 0`` and zero mass/density, so they never
    collide and leave the body's inertia unchanged.  ``density=None`` keeps
    MuJoCo's default density.  Returns the list of ``MjsGeom``.
    """
    if len(shape.parts) > MAX_PARTS:
        raise ValueError(f"{shape.name} has {len(shape.parts)} parts > MAX_PARTS={MAX_PARTS}")
    geoms = []
    for i, p in enumerate(shape.parts):
        g = body.add_geom(name=f"{name_prefix}_geom{i}", type=part_geom_type(p.kind), size=list(p.size),
                          pos=list(p.pos), quat=list(p.quat), rgba=list(rgba))
        if density is not None:
            g.density = density
        g.friction = [friction, g.friction[1], g.friction[2]]
        geoms.append(g)
    for i in range(len(shape.parts), MAX_PARTS):  # padding: invisible (group 5), massless, never collides
        geoms.append(body.add_geom(name=f"{name_prefix}_geom{i}", type=mujoco.mjtGeom.mjGEOM_SPHERE,
                                   size=[PAD_SIZE, 0, 0], contype=0, conaffinity=0, density=0.0, mass=0.0,
                                   group=5, rgba=[0, 0, 0, 0]))
    return geoms
