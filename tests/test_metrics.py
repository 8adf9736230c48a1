"""Episode metrics on scripted angular velocities with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from dexndm.sim.metrics import EpisodeTracker, summarize


def test_scripted_episode_metrics():
    dt = 0.05
    tracker = EpisodeTracker(2, episode_steps=400, dt=dt)
    axis = np.tile([0.0, 0.0, 1.0], (2, 1))
    for _ in range(100):
        w = np.array([[0.0, 0.0, 0.5], [0.3, 0.0, -0.4]])
        tracker.step(w, axis, goal_angle=np.array([0.2, 1.0]))
    out = tracker.finish(np.array([True, True]), np.array([False, True]), success_angle=0.1 * np.pi)
    assert out["rot_r"] == pytest.approx([50.0, -40.0])
    assert out["rot_rad"] == pytest.approx([2.5, -2.0])
    assert out["rotp"] == pytest.approx([0.0, 0.3])
    assert out["ttf"] == pytest.approx([0.25, 0.25])
    assert out["survival_angle"] == pytest.approx([2.5, 2.5])
    assert out["go_success"].tolist() == [1.0, 0.0]
    assert out["blowup"].tolist() == [0.0, 1.0]
    tracker.reset(np.array([0]))
    assert tracker.steps.tolist() == [0, 100] and tracker.w_dot_k[0] == 0.0


def test_summarize_mean_std():
    s = summarize({"ttf": [1.0, 0.5], "empty": []})
    assert s == {"ttf": {"mean": 0.75, "std": 0.25, "n": 2}}
