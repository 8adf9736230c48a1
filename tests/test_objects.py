"""Tests for dexndm.sim.objects: Table 9 object sets, exact bounding boxes, MjSpec geoms."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from dexndm.sim import objects as obj
from dexndm.sim.objects import MAX_PARTS, ObjectShape, Part, add_object_geoms, object_set

# Table 9 of the paper, written out independently of the module:
# name: (count, min-extent range, aspect range, scale range)
TABLE9 = {
    "cylinders": (9, (0.04, 0.04), (1.6, 2.4), (0.70, 0.86)),
    "cuboids": (9, (0.064, 0.064), (1.25, 1.5), (0.70, 0.86)),
    "long_cuboids": (4, (0.06, 0.08), (2.5, 6.67), (0.5, 0.5)),
    "small_cylinders": (9, (0.025, 0.025), (1.92, 2.56), (0.5, 0.6)),
    "complex": (120, (0.056, 0.115), (1.05, 2.00), (0.6, 0.7)),
    "unseen": (26, (0.04, 0.12), (1.0, 2.0), (0.5, 0.6)),
}
TOL = 1e-6
S2 = math.sqrt(0.5)


def test_set_names():
    assert obj.SETS == tuple(TABLE9)
    assert obj.TRAINING_SETS == obj.SETS[:5]


@pytest.mark.parametrize("name", list(TABLE9))
def test_set_matches_table9(name):
    count, (me_lo, me_hi), (ar_lo, ar_hi), scale_range = TABLE9[name]
    shapes = object_set(name)
    assert len(shapes) == count
    assert len({s.name for s in shapes}) == count
    for s in shapes:
        assert s.category == name and s.name.startswith(f"{name}/")
        assert 1 <= len(s.parts) <= MAX_PARTS
        assert s.scale_range == pytest.approx(scale_range, abs=1e-12)
        ext = s.extents()
        assert me_lo - TOL <= ext.min() <= me_hi + TOL, (s.name, ext)
        assert ar_lo - TOL <= s.aspect_ratio() <= ar_hi + TOL, (s.name, s.aspect_ratio())
        lo, hi = s.bounding_box()
        np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-12)  # frame at bbox centre


def test_ranges_are_spanned():
    """Primitive sets span their aspect range end to end."""
    for name in ("cylinders", "cuboids", "long_cuboids", "small_cylinders"):
        ars = [s.aspect_ratio() for s in object_set(name)]
        assert min(ars) == pytest.approx(TABLE9[name][2][0]) and max(ars) == pytest.approx(TABLE9[name][2][1])
    kinds = {p.kind for s in object_set("cylinders") for p in s.parts}
    assert kinds == {"cylinder"}


@pytest.mark.parametrize("name", ["complex", "unseen"])
def test_composites_fit_the_hand(name):
    for s in object_set(name):
        assert s.extents().max() * s.scale_range[1] <= obj.MAX_SCALED_EXTENT + TOL, s.name


def test_unseen_families_not_in_training():
    family = lambda s: s.name.split("_", 1)[1]  # noqa: E731
    train = {family(s) for s in object_set("complex")}
    test = {family(s) for s in object_set("unseen")}
    assert len(train) >= 5 and len(test) >= 5
    assert not train & test


def test_deterministic_and_seeded():
    for name in obj.SETS:
        assert object_set(name, seed=0) == object_set(name, seed=0)
    obj._object_set.cache_clear()  # a fresh generation, not the cached tuple
    a = object_set("complex", seed=0)
    obj._object_set.cache_clear()
    assert a == object_set("complex", seed=0)
    assert a != object_set("complex", seed=1)


def test_unknown_set():
    with pytest.raises(ValueError) as err:
        object_set("spheres")
    for name in obj.SETS:
        assert name in str(err.value)


def test_part_validation():
    with pytest.raises(ValueError):
        Part("cone", (1.0, 1.0, 1.0))
    with pytest.raises(ValueError):
        obj.part_geom_type("mesh")
    with pytest.raises(ValueError):
        ObjectShape("x", "x", tuple(Part("sphere", (0.01, 0, 0)) for _ in range(MAX_PARTS + 1)), (1, 1))
    assert obj.part_geom_type("capsule") == mujoco.mjtGeom.mjGEOM_CAPSULE


def _rot(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    h = math.radians(deg) / 2
    return (math.cos(h), *(math.sin(h) * axis))


def test_bbox_hand_computed():
    a, c = 0.02, 0.01
    box = ObjectShape("b", "t", (Part("box", (a, a, c), quat=_rot((0, 0, 1), 45)),), (1, 1))
    np.testing.assert_allclose(box.extents(), [2 * math.sqrt(2) * a, 2 * math.sqrt(2) * a, 2 * c], rtol=1e-12)
    r, h = 0.01, 0.03
    cyl = ObjectShape("c", "t", (Part("cylinder", (r, h, 0), quat=_rot((1, 0, 0), 90)),), (1, 1))
    np.testing.assert_allclose(cyl.extents(), [2 * r, 2 * h, 2 * r], rtol=1e-12)
    cyl45 = ObjectShape("c", "t", (Part("cylinder", (r, h, 0), quat=_rot((1, 0, 0), 45)),), (1, 1))
    np.testing.assert_allclose(cyl45.extents(), [2 * r, 2 * (h + r) * S2, 2 * (h + r) * S2], rtol=1e-12)
    cap45 = ObjectShape("c", "t", (Part("capsule", (r, h, 0), quat=_rot((1, 0, 0), 45)),), (1, 1))
    np.testing.assert_allclose(cap45.extents(), [2 * r, 2 * (h * S2 + r), 2 * (h * S2 + r)], rtol=1e-12)
    e = (0.03, 0.01, 0.02)
    ell = ObjectShape("e", "t", (Part("ellipsoid", e, pos=(0.1, 0, 0), quat=_rot((0, 0, 1), 45)),), (1, 1))
    lo, hi = ell.bounding_box()
    half = math.sqrt((e[0] ** 2 + e[1] ** 2) / 2)
    np.testing.assert_allclose(hi - lo, [2 * half, 2 * half, 2 * e[2]], rtol=1e-12)
    assert lo[0] == pytest.approx(0.1 - half)


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5**0.5) * i
    rho = np.sqrt(1 - z**2)
    return np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1)


_T = np.linspace(0, 2 * math.pi, 4000, endpoint=False)
_CIRCLE = np.stack([np.cos(_T), np.sin(_T), np.zeros_like(_T)], axis=1)
_SPHERE = _fibonacci_sphere(40000)


def _surface_samples(gtype: int, size: np.ndarray) -> np.ndarray:
    """Points on the primitive's surface (geom frame) that contain its extreme points densely."""
    G = mujoco.mjtGeom
    circle, sph = _CIRCLE, _SPHERE
    if gtype == G.mjGEOM_BOX:
        return np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * size
    if gtype == G.mjGEOM_SPHERE:
        return sph * size[0]
    if gtype == G.mjGEOM_ELLIPSOID:
        return sph * size
    if gtype == G.mjGEOM_CYLINDER:
        return np.concatenate([circle * size[0] + [0, 0, s * size[1]] for s in (-1, 1)])
    if gtype == G.mjGEOM_CAPSULE:
        return np.concatenate([sph * size[0] + [0, 0, s * size[1]] for s in (-1, 1)])
    raise AssertionError(gtype)


def test_bbox_exact_against_mujoco_poses():
    """Sample each compiled geom's surface, posed by MuJoCo, and compare with bounding_box()."""
    shapes = [
        ObjectShape("mix", "t", (
            Part("box", (0.02, 0.01, 0.005), (0.01, 0, 0), _rot((1, 1, 0), 33)),
            Part("cylinder", (0.01, 0.03, 0), (0, 0.02, 0), _rot((0.3, 1, 0.2), 71)),
            Part("capsule", (0.008, 0.02, 0), (0, 0, 0.03), _rot((1, 0, 1), 50)),
            Part("ellipsoid", (0.03, 0.01, 0.02), (-0.02, 0, 0), _rot((0.2, 0.5, 1), 60)),
            Part("sphere", (0.012, 0, 0), (0.0, -0.03, 0.01)),
        ), (1, 1)),
        *object_set("complex")[:16],
        *object_set("unseen")[:7],
    ]
    spec = mujoco.MjSpec()
    for k, s in enumerate(shapes):
        add_object_geoms(spec.worldbody.add_body(name=f"b{k}"), s, name_prefix=f"o{k}")
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    for k, s in enumerate(shapes):
        pts = []
        for i in range(len(s.parts)):
            g = k * MAX_PARTS + i
            local = _surface_samples(model.geom_type[g], model.geom_size[g])
            pts.append(local @ data.geom_xmat[g].reshape(3, 3).T + data.geom_xpos[g])
        pts = np.concatenate(pts)
        lo, hi = s.bounding_box()
        # samples never leave the exact box, and dense samples reach its faces
        assert np.all(pts.min(0) >= lo - 1e-9) and np.all(pts.max(0) <= hi + 1e-9), s.name
        np.testing.assert_allclose(pts.min(0), lo, atol=2e-5, err_msg=s.name)
        np.testing.assert_allclose(pts.max(0), hi, atol=2e-5, err_msg=s.name)


def _free_model(shape: ObjectShape, density: float, pad: bool = True) -> mujoco.MjModel:
    spec = mujoco.MjSpec()
    body = spec.worldbody.add_body(name="object", pos=[0, 0, 0.2])
    body.add_freejoint()
    if pad:
        add_object_geoms(body, shape, density=density)
    else:
        for p in shape.parts:
            body.add_geom(type=obj.part_geom_type(p.kind), size=list(p.size), pos=list(p.pos),
                          quat=list(p.quat), density=density)
    return spec.compile()


def test_add_object_geoms_slots_and_padding():
    shape = object_set("cylinders")[3]
    spec = mujoco.MjSpec()
    body = spec.worldbody.add_body(name="object")
    body.add_freejoint()
    geoms = add_object_geoms(body, shape, density=500.0, friction=0.7, name_prefix="obj")
    assert len(geoms) == MAX_PARTS
    model = spec.compile()
    assert model.ngeom == MAX_PARTS
    n = len(shape.parts)
    for i in range(MAX_PARTS):
        gid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, f"obj_geom{i}")
        assert gid == i
        if i < n:
            assert model.geom_contype[gid] == 1 and model.geom_conaffinity[gid] == 1
            assert model.geom_friction[gid][0] == pytest.approx(0.7)
        else:
            assert model.geom_contype[gid] == 0 and model.geom_conaffinity[gid] == 0
            assert model.geom_size[gid][0] == pytest.approx(obj.PAD_SIZE)


def test_padding_adds_no_mass():
    shape = object_set("cylinders")[0]
    (part,) = shape.parts
    r, length = part.size[0], 2 * part.size[1]
    model = _free_model(shape, 500.0)
    assert model.body_mass[1] == pytest.approx(math.pi * r**2 * length * 500.0, rel=1e-3)
    for s in (object_set("complex")[0], object_set("unseen")[1]):  # multi-part, padded and not
        padded, bare = _free_model(s, 400.0), _free_model(s, 400.0, pad=False)
        assert padded.ngeom == MAX_PARTS and bare.ngeom == len(s.parts) < MAX_PARTS
        assert padded.body_mass[1] == pytest.approx(bare.body_mass[1], rel=1e-9)
        assert padded.body_mass[1] == pytest.approx(400.0 * s.volume(), rel=1e-6)
        np.testing.assert_allclose(padded.body_inertia[1], bare.body_inertia[1], rtol=1e-9)
        np.testing.assert_allclose(padded.body_ipos[1], bare.body_ipos[1], atol=1e-12)


def test_scaled_is_linear():
    for s in (object_set("cuboids")[2], object_set("complex")[5], object_set("unseen")[3]):
        t = s.scaled(0.65)
        np.testing.assert_allclose(t.extents(), 0.65 * s.extents(), rtol=1e-12)
        assert t.volume() == pytest.approx(0.65**3 * s.volume(), rel=1e-12)
        assert t.aspect_ratio() == pytest.approx(s.aspect_ratio(), rel=1e-12)
        assert t.name == s.name and t.scale_range == s.scale_range
    with pytest.raises(ValueError):
        s.scaled(0.0)


def test_volume_of_primitives():
    r, h = 0.01, 0.02
    assert Part("capsule", (r, h, 0)).volume() == pytest.approx(2 * math.pi * r * r * h + 4 / 3 * math.pi * r**3)
    assert Part("box", (0.01, 0.02, 0.03)).volume() == pytest.approx(8 * 0.01 * 0.02 * 0.03)
    assert Part("ellipsoid", (0.01, 0.02, 0.03)).volume() == pytest.approx(4 / 3 * math.pi * 6e-6)
