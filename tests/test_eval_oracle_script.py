"""experiments/eval_oracle.py, the script behind every oracle number in checkpoints/oracle/*/CARD.md."""

from __future__ import annotations

import pytest
import torch

from dexndm.hand import constants as hc
from tests.conftest import experiment_script


@pytest.fixture(scope="module")
def eval_oracle():
    return experiment_script("eval_oracle")


def test_counts_the_first_episode_of_every_env_in_batches(eval_oracle, tiny_env_cfg) -> None:
    """5 episodes from batches of 3 envs: 3 + 2 first episodes, however early some of them end."""
    cfg = {**tiny_env_cfg, "episode_steps": 16, "drop_distance": 0.004}   # a 4 mm slip ends an episode
    calls = []

    def shaky(obs):          # large random actions: some episodes end early (drops), others run to 16 steps
        calls.append(obs.shape[0])
        return 3.0 * torch.randn(obs.shape[0], hc.NUM_JOINTS, generator=gen)

    gen = torch.Generator().manual_seed(0)
    result = eval_oracle.evaluate(shaky, cfg, envs=3, episodes=5, seed=0)
    assert result["episodes"] == 5
    assert sorted(set(calls)) == [2, 3]                      # a batch of 3 envs, then one of 2
    assert 0.0 < result["ttf"] < 1.0                          # some dropped early: the count is not trivially 5
    assert len(result["rot_by_quarter"]) == eval_oracle.QUARTERS
    assert result["rot_rad"] == pytest.approx(result["rot_r"] * 0.05, rel=1e-5)   # rad = sum of rad/s x 50 ms
    assert set(result["last_quarter_by_joint"]) == set(hc.JOINT_NAMES)
