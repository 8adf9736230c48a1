"""The diagnostic scripts whose numbers the oracle READMEs quote: experiments/oracle_drops.py,
grasp_probe.py and paddle_probe.py, on the tiny env."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dexndm.hand import constants as hc
from tests.conftest import experiment_script


def test_oracle_drops_accounts_for_every_episode(tiny_env_cfg) -> None:
    drops = experiment_script("oracle_drops")
    steps = 16
    cfg = {**tiny_env_cfg, "episode_steps": steps, "drop_distance": 0.004}   # a 4 mm slip ends an episode
    gen = torch.Generator().manual_seed(0)
    result = drops.first_episodes(lambda obs: 3.0 * torch.randn(obs.shape[0], hc.NUM_JOINTS, generator=gen),
                                  cfg, envs=4, seed=0)
    assert 0 < result["dropped"] == len(result["drop_steps"]) <= 4
    assert all(1 <= s < steps for s in result["drop_steps"])
    # TTF is the episodes' lengths over the full length: drops end at their step, the rest at `steps`
    held = 4 - result["dropped"]
    assert result["ttf"] == pytest.approx((sum(result["drop_steps"]) + held * steps) / (4 * steps))
    assert result["lateral_cm"] >= 0.0 and len(result["mean_shift_cm"]) == 3
    assert 0.0 <= result["tips_on_object_dropped"] <= 4.0


def test_grasp_probe_lifts_only_the_fingers_flexion_joints_and_closes_back(tiny_env_cfg) -> None:
    probe = experiment_script("grasp_probe")
    finger, k = 1, 3
    schedule = probe.lift(finger, envs=2, k=k)
    actions = []
    while (a := schedule(len(actions))) is not None:
        actions.append(a)
    actions = torch.stack(actions)                         # [steps, envs, 16]
    assert len(actions) == 2 * k + probe.HOLD_STEPS
    moved = actions.abs().sum((0, 1)) > 0
    expected = torch.zeros(hc.NUM_JOINTS, dtype=torch.bool)
    expected[[j for j in hc.FINGER_JOINTS[finger] if hc.FLEXION_MASK[j] > 0]] = True
    assert torch.equal(moved, expected)
    assert torch.all(actions.sum(0) == 0)                 # open k steps, close k steps: back where it started
    # zero action from the validated start grasps: held, and the object only settles (a turning oracle
    # makes ~1 rad in these 2.2 s)
    held, rotated = probe.run(tiny_env_cfg, 3, 0, probe.lift(None, 3, 2))
    assert held.all()
    assert np.abs(rotated).max() < 0.2


def test_paddle_probe_targets_follow_a_slow_pattern_and_lag_a_fast_one(tiny_env_cfg) -> None:
    paddle = experiment_script("paddle_probe").paddle
    still = paddle(tiny_env_cfg, 2, 12, 0.0, 0.0, 1.0, 0.0)
    assert still["held"] == 1.0 and abs(still["rad_all"]) < 0.02 and still["target_lag_rad"] < 1e-9
    slow = paddle(tiny_env_cfg, 2, 12, 0.05, 0.05, 2.0, 0.0)       # A w = 0.1 rad/s: the targets keep up
    assert slow["target_lag_rad"] < 1e-6
    fast = paddle(tiny_env_cfg, 2, 12, 0.5, 0.05, 8.0, 0.0)        # A w = 4 rad/s > 24 x 0.05 / 1.2 s
    assert fast["target_lag_rad"] > 0.05
