"""The command path: relative targets, clamping, latency, encoder model."""

from __future__ import annotations

import numpy as np

from dexndm.hand import constants as hc
from dexndm.sim.control import HandController
from dexndm.sim.domain import load_domain


def test_relative_targets_clamped_and_nan_safe():
    c = HandController(2, load_domain(), action_scale=1 / 24)
    c.reset(np.arange(2), np.tile(hc.CANONICAL_POSE, (2, 1)))
    action = np.zeros((2, 16))
    action[0, 1] = 1.0
    action[1, :] = np.nan
    c.relative(action)
    assert c.target[0, 1] == np.float64(hc.CANONICAL_POSE[1] + 1 / 24)
    np.testing.assert_array_equal(c.target[1], hc.CANONICAL_POSE)
    c.relative(np.full((2, 16), 1e9))  # clipped to [-1, 1] before scaling
    np.testing.assert_allclose(c.target[1] - hc.clamp_to_limits(hc.CANONICAL_POSE + 1 / 24), 0, atol=1e-12)
    for _ in range(200):
        c.relative(np.ones((2, 16)))
    np.testing.assert_array_equal(c.target[0], hc.JOINT_UPPER)


def test_latency_delays_commands_by_control_and_physics_steps():
    domain = load_domain("latency")  # 1 control step + 2 physics steps
    c = HandController(1, domain)
    start = np.zeros((1, 16))
    c.reset(np.arange(1), start)
    first = c.absolute(np.full((1, 16), 0.1)).copy()
    second = c.absolute(np.full((1, 16), 0.2)).copy()
    np.testing.assert_array_equal(first, 0.0)  # the command is still queued
    np.testing.assert_array_equal(second[:, :2], 0.0)   # previous command for 2 physics steps
    np.testing.assert_array_equal(second[:, 2:], 0.1)   # then the one from a control step ago


def test_preview_returns_what_absolute_would_and_changes_nothing():
    c = HandController(1, load_domain("latency"))
    c.reset(np.arange(1), np.zeros((1, 16)))
    c.absolute(np.full((1, 16), 0.1))
    before = {k: np.copy(getattr(c, k)) for k in ("target", "sent", "queue", "applied", "ctrl")}
    seen = c.preview(np.full((1, 16), 0.3), offset=np.full((1, 16), 0.05)).copy()
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(c, k), v, err_msg=k)
    np.testing.assert_array_equal(seen, c.absolute(np.full((1, 16), 0.3), offset=np.full((1, 16), 0.05)))
    assert seen[0, -1, 0] == 0.1                    # a control step of latency: the previous command acts


def test_chain_is_what_relative_applies_and_applies_nothing():
    c = HandController(2, load_domain(), action_scale=1 / 24)
    c.reset(np.arange(2), np.tile(hc.CANONICAL_POSE, (2, 1)))
    action = np.array([[5.0] * 16, [np.nan] * 8 + [-0.5] * 8])
    nxt = c.chain(action)
    np.testing.assert_array_equal(c.target, np.tile(hc.CANONICAL_POSE, (2, 1)))   # unchanged until applied
    c.relative(action)
    np.testing.assert_array_equal(c.target, nxt)
    np.testing.assert_allclose(nxt[1, :8], hc.CANONICAL_POSE[:8])                    # NaN reads as 0


def test_encoder_bias_and_noise():
    domain = load_domain("sensor_noise")
    c = HandController(1, domain)
    rng = np.random.default_rng(0)
    q = np.zeros((20000, 16))
    measured = c.measure(q, rng)
    np.testing.assert_allclose(measured.mean(0), domain.joint_bias, atol=5e-4)
    np.testing.assert_allclose(measured.std(0), domain.joint_noise_std, rtol=0.05)
