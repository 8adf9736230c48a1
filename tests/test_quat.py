"""Quaternion helpers: the rotation vector inverts from_axis_angle, sign and wrap included."""

import numpy as np

from dexndm.sim import quat


def test_rotation_vector_recovers_axis_times_angle():
    rng = np.random.default_rng(0)
    axis = rng.normal(size=(100, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = rng.uniform(-3.0, 3.0, size=100)
    start = quat.random(rng, 100)
    end = quat.mul(quat.from_axis_angle(axis, angle), start)
    end[::2] *= -1.0                              # the double cover must not matter
    np.testing.assert_allclose(quat.rotation_vector(start, end), axis * angle[:, None], atol=1e-9)


def test_rotation_vector_of_identity_and_tiny_turns():
    q = quat.random(np.random.default_rng(1), 4)
    np.testing.assert_allclose(quat.rotation_vector(q, q), 0.0, atol=1e-12)
    tiny = quat.mul(quat.from_axis_angle(np.array([0.0, 0.0, 1.0]), 1e-7), q)
    np.testing.assert_allclose(quat.rotation_vector(q, tiny), [[0.0, 0.0, 1e-7]] * 4, atol=1e-12)
