"""Temporally correlated exploration for PPO on relative joint targets.

With the paper's relative action (a_t = a_{t-1} + action / 24) white Gaussian noise
makes each joint target a random walk of 1/24 rad steps: ten steps of unit noise move
a finger by about 0.13 rad, while a finger gait lifts and re-places fingers by several
tenths of a radian.  Exploration then finds the twist that turns the object once and
rarely the re-grasp that lets it turn again (the oracle runs in
``experiments/oracle_cuboids_palm_up_z`` plateau at about 1 rad per episode).

``CorrelatedNoiseActor`` samples the behaviour action as ``loc + scale * eps_t`` with
``eps_t`` a per-environment, per-joint AR(1) process of unit marginal variance,

    eps_t = beta * eps_{t-1} + sqrt(1 - beta^2) * xi_t,      xi_t ~ N(0, I),

so each step's action still has the policy's Gaussian marginal N(loc, scale^2) (its
log-probability under that Gaussian is what PPO's ratio uses, as with white noise),
but consecutive steps push the same way for about 1 / (1 - beta) steps.  beta = 0 is
ordinary white noise.  The same idea as coloured-noise exploration (Eberhard et al.
2023, "Pink noise is all you need"), here as a first-order process so the state per
environment is one vector, reset at every checkpoint boundary for exact resume.
"""

from __future__ import annotations

import math

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

from dexndm.rl.networks import ActorCritic


class CorrelatedNoiseActor(TensorDictModuleBase):
    """Behaviour policy for data collection: reads ``observation``, writes ``loc``, ``scale``,
    ``action`` and ``action_log_prob`` (the keys TorchRL's ``ProbabilisticActor`` writes).

    ``beta`` in [0, 1): correlation of the noise between consecutive control steps.
    The noise state ``[N, act_dim]`` starts from a stationary draw after ``reset_noise()``.
    """

    def __init__(self, ac: ActorCritic, beta: float, obs_key: str = "observation"):
        super().__init__()
        self.in_keys = [obs_key]
        self.out_keys = ["loc", "scale", "action", "action_log_prob"]
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"ppo.noise_correlation must be in [0, 1), got {beta}")
        self.ac = ac
        self.beta = float(beta)
        self.obs_key = obs_key
        self._eps: torch.Tensor | None = None

    def reset_noise(self) -> None:
        """Forget the noise state (the next step draws it from the stationary N(0, I))."""
        self._eps = None

    def _next_noise(self, like: torch.Tensor) -> torch.Tensor:
        xi = torch.randn(like.shape, dtype=like.dtype, device=like.device)
        if self._eps is None or self._eps.shape != like.shape:
            self._eps = xi
        else:
            self._eps = self.beta * self._eps + math.sqrt(1.0 - self.beta ** 2) * xi
        return self._eps

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        loc, scale = self.ac.policy(tensordict[self.obs_key])
        action = loc + scale * self._next_noise(loc)
        log_prob = torch.distributions.Normal(loc, scale).log_prob(action).sum(-1)
        tensordict.set("loc", loc)
        tensordict.set("scale", scale)
        tensordict.set("action", action)
        tensordict.set("action_log_prob", log_prob)
        return tensordict
