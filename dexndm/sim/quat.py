"""Vectorised quaternion helpers (numpy, w x y z, the MuJoCo convention). Shapes [..., 4]."""

from __future__ import annotations

import numpy as np


def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], axis=-1)


def conj(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def normalize(q: np.ndarray) -> np.ndarray:
    return q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)


def from_axis_angle(axis: np.ndarray, angle: np.ndarray | float) -> np.ndarray:
    """Rotation by ``angle`` (rad, [...]) about unit ``axis`` ([..., 3])."""
    axis = np.asarray(axis, dtype=float)
    half = np.broadcast_to(0.5 * np.asarray(angle, dtype=float), axis.shape[:-1])[..., None]
    return np.concatenate([np.cos(half), np.sin(half) * axis], axis=-1)


def angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Geodesic angle (rad, [...]) between orientations a and b, in [0, pi]."""
    dot = np.abs((normalize(a) * normalize(b)).sum(-1))
    return 2.0 * np.arccos(np.clip(dot, -1.0, 1.0))


def rotation_axis(q_from: np.ndarray, q_to: np.ndarray) -> np.ndarray:
    """Unit axis (world frame, [..., 3]) of the shortest rotation taking q_from to q_to;
    an arbitrary unit axis (+z) where the two coincide."""
    rel = mul(q_to, conj(q_from))
    rel = rel * np.where(rel[..., :1] < 0, -1.0, 1.0)
    vec = rel[..., 1:]
    norm = np.linalg.norm(vec, axis=-1, keepdims=True)
    return np.where(norm > 1e-9, vec / np.maximum(norm, 1e-12), np.array([0.0, 0.0, 1.0]))


def random(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform random orientations [n, 4]."""
    return normalize(rng.normal(size=(n, 4)))


def rotation_vector(q_from: np.ndarray, q_to: np.ndarray) -> np.ndarray:
    """Rotation vector (world frame, axis * angle in rad, [..., 3]) of the shortest rotation
    taking q_from to q_to: divided by the elapsed time it is the mean angular velocity."""
    rel = normalize(mul(q_to, conj(q_from)))
    rel = rel * np.where(rel[..., :1] < 0, -1.0, 1.0)
    vec = rel[..., 1:]
    sin_half = np.linalg.norm(vec, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(sin_half, rel[..., :1])
    return np.where(sin_half > 1e-12, vec * (angle / np.maximum(sin_half, 1e-12)), 2.0 * vec)
