"""Time-correlated exploration noise (dexndm.rl.exploration) and its use in PPO collection."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from dexndm.rl.checkpoint import load_checkpoint
from dexndm.rl.config import PPOConfig
from dexndm.rl.exploration import CorrelatedNoiseActor
from dexndm.rl.networks import ActorCritic
from dexndm.rl.ppo import PPOTrainer, train

from tests.test_ppo import TINY_PPO, tiny_cfg


def _noise_sequence(beta: float, steps: int = 400, envs: int = 64, act_dim: int = 8) -> torch.Tensor:
    """Standardised exploration noise (action - loc) / scale over ``steps`` calls, [T, N, A]."""
    torch.manual_seed(0)
    ac = ActorCritic(5, act_dim, PPOConfig(hidden=[16], init_log_std=-0.5, precision="fp32"))
    explorer = CorrelatedNoiseActor(ac, beta)
    obs = torch.randn(envs, 5)
    out = []
    for _ in range(steps):
        td = explorer(TensorDict({"observation": obs}, batch_size=[envs]))
        out.append((td["action"] - td["loc"]) / td["scale"])
    return torch.stack(out)


@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_noise_has_unit_marginal_and_the_stated_step_correlation(beta):
    eps = _noise_sequence(beta)
    lag1 = float((eps[1:] * eps[:-1]).mean() / (eps ** 2).mean())
    assert abs(float(eps.var()) - 1.0) < 0.1        # each step's action keeps the policy's Gaussian
    assert abs(lag1 - beta) < 0.05


def test_log_prob_is_the_policy_gaussian_of_the_taken_action():
    ac = ActorCritic(5, 4, PPOConfig(hidden=[16], precision="fp32"))
    explorer = CorrelatedNoiseActor(ac, 0.8)
    td = explorer(TensorDict({"observation": torch.randn(3, 5)}, batch_size=[3]))
    expected = torch.distributions.Normal(td["loc"], td["scale"]).log_prob(td["action"]).sum(-1)
    torch.testing.assert_close(td["action_log_prob"], expected)
    explorer.reset_noise()
    assert explorer._eps is None


def test_bad_correlation_is_refused():
    with pytest.raises(ValueError, match="noise_correlation"):
        PPOConfig(noise_correlation=1.0)


def test_ppo_collects_with_correlated_noise_and_resumes_exactly(tmp_path, tiny_env_cfg):
    ppo = {**TINY_PPO, "noise_correlation": 0.9}
    trainer = PPOTrainer({**tiny_cfg(tiny_env_cfg, tmp_path / "probe", iterations=1), "ppo": ppo})
    try:
        assert trainer.collector.policy is trainer.explorer     # the behaviour policy is the noisy one
        batch = next(trainer._batches)                          # [N, T]
    finally:
        trainer.close()
    eps = (batch["action"] - batch["loc"]) / batch["scale"]
    lag1 = float((eps[:, 1:] * eps[:, :-1]).mean() / (eps ** 2).mean())
    assert lag1 > 0.6                                           # white noise would give ~0

    straight, split = tmp_path / "straight", tmp_path / "split"
    train({**tiny_cfg(tiny_env_cfg, straight, iterations=4, checkpoint_every=2), "ppo": ppo})
    train({**tiny_cfg(tiny_env_cfg, split, iterations=2, checkpoint_every=2), "ppo": ppo})
    train({**tiny_cfg(tiny_env_cfg, split, iterations=4, checkpoint_every=2), "ppo": ppo})
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=1e-6, msg=key)
