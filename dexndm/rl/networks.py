"""Oracle actor-critic on the privileged observation (DexNDM Sec. 3.1, Appendix A.1).

The policy outputs a diagonal Gaussian over the relative joint-target action
(Delta a_t in the paper; the environment clips it to [-1, 1] and applies a_t =
a_{t-1} + Delta a_t / 24).  As in Hora: an ELU MLP trunk [512, 256, 128] shared by a
linear mean head and a linear value head, and a learnable state-independent log-std.

``ppo.precision=bf16`` runs the trunks' matrix products in bfloat16 autocast (the update 1.4-1.7x
faster than fp32 on an AVX512-BF16 CPU); ``auto``, the default, picks it where the device computes it
natively (``resolve_precision``, which the trainer applies before building the model).  The normalisers
run before the trunk and the mean, value and log-std heads after it in fp32, so log-probabilities, the PPO
ratio and the KL keep fp32 precision (bf16 log-probs summed over 16 joints would be off by ~0.1).

``ActorCritic`` owns every parameter and buffer (observation and value normalisers
included), so one ``state_dict`` rebuilds the whole policy.  ``make_actor`` and
``make_critic`` wrap it as TorchRL's ``ProbabilisticActor`` (keys ``observation`` ->
``loc``, ``scale``, ``action``, ``action_log_prob``) and ``ValueOperator``
(``observation`` -> ``state_value``, in reward units).
"""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import IndependentNormal, ProbabilisticActor, ValueOperator

from dexndm.rl.config import PPOConfig
from dexndm.rl.normalizer import RunningNorm

_ACT = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}


def mlp(in_dim: int, hidden: list[int], activation: str = "elu") -> nn.Sequential:
    """Linear + activation for every hidden width (the output layer is the caller's)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), _ACT[activation]()]
        in_dim = width
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Normalise -> trunk -> (mean head, value head); obs ``[B, obs_dim]``, action ``[B, act_dim]``."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: PPOConfig):
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.obs_norm = RunningNorm(obs_dim, clip=cfg.obs_clip, enabled=cfg.normalize_obs)
        self.value_norm = RunningNorm(1, enabled=cfg.normalize_value)
        self.actor_trunk = mlp(obs_dim, cfg.hidden, cfg.activation)
        self.shared = cfg.critic_hidden is None
        self.critic_trunk = None if self.shared else mlp(obs_dim, cfg.critic_hidden, cfg.activation)
        critic_width = cfg.hidden[-1] if self.shared else cfg.critic_hidden[-1]
        self.mu = nn.Linear(cfg.hidden[-1], act_dim)
        self.value_head = nn.Linear(critic_width, 1)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(cfg.init_log_std)))
        # Adam moves a state-independent log std at a near-constant rate whenever its gradient keeps
        # one sign (motion penalties: down; an entropy bonus: up); bounds stop it where set.
        self.log_std_bounds = (cfg.log_std_min, cfg.log_std_max)
        self._trunk_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        if cfg.precision not in ("fp32", "bf16"):
            raise ValueError(f"ActorCritic needs ppo.precision fp32 or bf16, got {cfg.precision!r}: resolve 'auto' "
                             "for the device first (dexndm.rl.config.resolve_precision)")
        self.trunk_dtype = torch.bfloat16 if cfg.precision == "bf16" else None
        # small initial mean: the first policy acts near zero (the grasp's targets)
        nn.init.normal_(self.mu.weight, std=0.01)
        nn.init.zeros_(self.mu.bias)

    def _trunk(self, trunk: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        """``trunk(x)`` in fp32 out, its products in ``trunk_dtype`` autocast where set."""
        if self.trunk_dtype is None:
            return trunk(x)
        with torch.autocast(device_type=x.device.type, dtype=self.trunk_dtype):
            h = trunk(x)
        return h.float()

    def policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian mean and std, ``[B, act_dim]`` each."""
        h = self._trunk(self.actor_trunk, self.obs_norm(obs))
        if self.shared and torch.is_grad_enabled():
            # the PPO loss evaluates the actor then the critic on the same observation tensor:
            # hand the trunk's output to value_normalized so a minibatch costs one trunk pass
            self._trunk_cache = (obs, h)
        loc = self.mu(h)
        lo, hi = self.log_std_bounds
        log_std = self.log_std if lo is None and hi is None else self.log_std.clamp(lo, hi)
        return loc, log_std.exp().expand_as(loc)

    def value_normalized(self, obs: torch.Tensor) -> torch.Tensor:
        """Standardised value ``[B, 1]`` (what the critic regresses)."""
        if self.shared:
            cached, self._trunk_cache = self._trunk_cache, None
            if cached is not None and cached[0] is obs and torch.is_grad_enabled():
                return self.value_head(cached[1])
        x = self.obs_norm(obs)
        h = self._trunk(self.actor_trunk if self.shared else self.critic_trunk, x)
        return self.value_head(h)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """Value in reward units ``[B, 1]``."""
        return self.value_norm.denormalize(self.value_normalized(obs))

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action (the mean, clipped to the env's [-1, 1]) for evaluation/deploy."""
        return self.policy(obs)[0].clamp(-1.0, 1.0)


class _PolicyHead(nn.Module):
    def __init__(self, ac: ActorCritic):
        super().__init__()
        self.ac = ac

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ac.policy(obs)


class _ValueHead(nn.Module):
    def __init__(self, ac: ActorCritic):
        super().__init__()
        self.ac = ac

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.ac.value(obs)


def make_actor(ac: ActorCritic, obs_key: str = "observation") -> ProbabilisticActor:
    """Stochastic policy: samples ``action`` and records ``loc``, ``scale``, ``action_log_prob``."""
    module = TensorDictModule(_PolicyHead(ac), in_keys=[obs_key], out_keys=["loc", "scale"])
    return ProbabilisticActor(module, in_keys=["loc", "scale"], out_keys=["action"],
                              distribution_class=IndependentNormal, distribution_kwargs={"tanh_loc": False},
                              return_log_prob=True)


def make_critic(ac: ActorCritic, obs_key: str = "observation") -> ValueOperator:
    """Value in reward units under ``state_value`` (what GAE needs)."""
    return ValueOperator(_ValueHead(ac), in_keys=[obs_key], out_keys=["state_value"])
