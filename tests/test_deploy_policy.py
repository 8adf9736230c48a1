"""Base + residual composition: the chain keeps the base targets, the hand gets base + residual."""

import numpy as np
import torch

from dexndm.hand import constants as hc
from dexndm.models.deploy_policy import DeployPolicy
from dexndm.models.generalist import GeneralistPolicy
from dexndm.models.residual import ResidualNet
from dexndm.sim import make_env
from dexndm.sim.control import ACTION_SCALE


class _ConstResidual(ResidualNet):
    def forward(self, q, a, obs=None, past=None):
        return torch.full_like(a, 0.05)


def _base(value: float) -> GeneralistPolicy:
    base = GeneralistPolicy(hidden=8, blocks=1)
    for p in base.mlp.parameters():
        torch.nn.init.zeros_(p)
    torch.nn.init.constant_(base.mlp.out.bias, value)
    return base


def test_chain_and_command_without_and_with_residual():
    obs = torch.zeros(3, GeneralistPolicy().obs_dim)
    prev = torch.as_tensor(np.tile(hc.CANONICAL_POSE, (3, 1)), dtype=torch.float32)
    q = prev.clone()
    target, command = DeployPolicy(_base(5.0))(obs, q, prev)   # base output clipped to 1
    torch.testing.assert_close(target, torch.minimum(prev + ACTION_SCALE, torch.as_tensor(hc.JOINT_UPPER).float()))
    torch.testing.assert_close(command, target)
    target2, command2 = DeployPolicy(_base(5.0), _ConstResidual())(obs, q, prev)
    torch.testing.assert_close(target2, target)                  # the chain ignores the residual
    upper = torch.as_tensor(hc.JOINT_UPPER, dtype=torch.float32)
    torch.testing.assert_close(command2, torch.minimum(target + 0.05, upper))


def test_residual_history_is_read_from_the_observation_pairs():
    """A residual with history k reads (q_j, a_j) of the k - 1 steps before now: q of the observation's pair j
    and a of pair j + 1 (the pairs are (q_k, a_{k-1})), exactly as training windows hold them; traced alike."""
    from dexndm.deploy.export import trace_policy

    from dexndm.sim.observations import DEPLOY_HISTORY

    k, T = 3, DEPLOY_HISTORY
    obs = torch.zeros(2, GeneralistPolicy().obs_dim)
    pairs = torch.arange(2 * T * 2 * 16, dtype=torch.float32).reshape(2, T, 2, 16) / 1000.0
    obs[:, :T * 2 * 16] = pairs.reshape(2, -1)
    res = ResidualNet(hidden=8, depth=1, history=k)
    torch.nn.init.normal_(res.mlp[-1].weight, std=0.5)
    policy = DeployPolicy(_base(0.0), res)
    expected = torch.stack([pairs[:, T - 3:T - 1, 0], pairs[:, T - 2:T, 1]], dim=2)     # j = t-2, t-1
    torch.testing.assert_close(policy.past(obs), expected)
    q, prev = pairs[:, -1, 0], pairs[:, -1, 1]
    target, command = policy(obs, q, prev)
    lower, upper = torch.as_tensor(hc.JOINT_LOWER).float(), torch.as_tensor(hc.JOINT_UPPER).float()
    torch.testing.assert_close(command, torch.minimum(torch.maximum(target + res(q, target, None, expected), lower), upper))
    assert not torch.allclose(res(q, target, None, expected), res(q, target, None, expected.flip(1)))  # order matters
    traced = trace_policy(policy)
    torch.testing.assert_close(traced(obs, q, prev)[1], command)


def test_nan_policy_holds_the_previous_target():
    base = _base(float("nan"))
    prev = torch.as_tensor(np.tile(hc.CANONICAL_POSE, (2, 1)), dtype=torch.float32)
    target, command = DeployPolicy(base)(torch.zeros(2, base.obs_dim), prev, prev)
    torch.testing.assert_close(target, prev)
    assert torch.isfinite(command).all()
    obs = torch.zeros(2, base.obs_dim)
    torch.testing.assert_close(base.act(obs), torch.zeros(2, 16))           # act holds too: one rule for both
    torch.testing.assert_close(_base(-5.0).act(obs), torch.full((2, 16), -1.0))


def test_env_target_offset_is_sent_but_not_chained(tiny_env_cfg):
    env = make_env(tiny_env_cfg)
    td = env.reset()
    start = env.control.target.copy()
    td["action"] = torch.zeros(env.batch_size[0], 16)
    td["target_offset"] = torch.full((env.batch_size[0], 16), 0.05)
    env.step(td)
    np.testing.assert_allclose(env.control.target, start, atol=1e-6)
    np.testing.assert_allclose(env.control.sent, np.clip(start + 0.05, hc.JOINT_LOWER, hc.JOINT_UPPER), atol=1e-6)
    env.close()
