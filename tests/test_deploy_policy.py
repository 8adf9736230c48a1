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
    def forward(self, q, a, obs=None):
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


def test_nan_policy_holds_the_previous_target():
    base = _base(float("nan"))
    prev = torch.as_tensor(np.tile(hc.CANONICAL_POSE, (2, 1)), dtype=torch.float32)
    target, command = DeployPolicy(base)(torch.zeros(2, base.obs_dim), prev, prev)
    torch.testing.assert_close(target, prev)
    assert torch.isfinite(command).all()


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
