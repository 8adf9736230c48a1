"""Rotation axes and wrist orientations."""

from __future__ import annotations

import numpy as np
import pytest

from dexndm.sim import orientations as ori
from dexndm.sim import quat


def test_32_axes_near_uniform_with_principal_first():
    axes = ori.all_axes()
    assert axes.shape == (32, 3)
    np.testing.assert_allclose(np.linalg.norm(axes, axis=1), 1.0)
    np.testing.assert_array_equal(axes[:6], np.array(list(ori.PRINCIPAL_AXES.values())))
    cos = axes @ axes.T
    np.fill_diagonal(cos, -1.0)
    assert np.degrees(np.arccos(cos.max())) > 30.0  # the best 32-point packing is about 37.5 deg
    assert len(ori.axes_for("general")) == 26 and len(ori.axes_for("z")) == 2
    with pytest.raises(ValueError, match="unknown axis group"):
        ori.axes_for("w")


def test_wrist_orientations():
    assert ori.gravity_directions("random") is None
    assert ori.gravity_directions("named").shape == (6, 3)
    np.testing.assert_allclose(ori.gravity_directions(["palm_up", [0, 0, 2.0]]), [[0, 0, -1], [0, 0, 1]])
    with pytest.raises(ValueError, match="unknown wrist orientation"):
        ori.gravity_directions("palm_sideways")


def test_orientation_quat_maps_palm_up_gravity_onto_each_direction():
    g = np.concatenate([ori.gravity_directions("named"), ori.sample_unit_vectors(np.random.default_rng(0), 20)])
    q = ori.orientation_quat(g)
    rotated = quat.mul(quat.mul(q, np.tile([0.0, 0, 0, -1], (len(q), 1))), quat.conj(q))[:, 1:]
    np.testing.assert_allclose(rotated, g, atol=1e-9)
