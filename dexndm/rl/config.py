"""PPO hyperparameters for the oracle policies (DexNDM Sec. 3.1, Appendix C "Policy Optimization").

The paper trains one PPO oracle per object category on the privileged observation and
gives no PPO hyperparameters; the defaults follow Hora (Qi et al. 2022,
``configs/train/AllegroHandHora.yaml``), the codebase this line of work builds on:
MLP [512, 256, 128] ELU, 5 epochs, 4 minibatches, lr 5e-3 adapted to a KL of 0.02,
gamma 0.99, lambda 0.95, clip 0.2, value clipping, grad norm 1.0, no entropy bonus,
normalised observations, values and advantages.  Hora's horizon is 8 steps with 16k
environments; with hundreds of CPU environments we collect 32 steps per environment.

``PPOConfig.from_dict`` rejects unknown keys (naming them) and impossible values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from dexndm.typed_config import from_mapping

ACTIVATIONS = ("elu", "relu", "tanh", "silu")
LR_SCHEDULES = ("adaptive", "fixed")
PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products natively: a CUDA GPU that supports them, or a
    CPU with AVX512-BF16 or AMX (what bf16 buys: ``dexndm/rl/networks.py``)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(check() for check in checks if check is not None)
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: ``auto`` is bf16 where ``device`` computes it natively, fp32 elsewhere (where
    bf16 would be emulated)."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


@dataclass
class PPOConfig:
    """Algorithm and network hyperparameters (the run-level settings live in the app config)."""

    horizon: int = 32                 # control steps per environment per iteration
    num_minibatches: int = 4          # minibatch = num_envs * horizon / num_minibatches frames
    epochs: int = 5
    lr: float = 5e-3                  # initial learning rate (Adam)
    lr_schedule: str = "adaptive"     # adaptive: x/÷1.5 after each epoch to keep KL near kl_target
    kl_target: float = 0.02
    min_lr: float = 1e-6
    max_lr: float = 1e-2
    clip: float = 0.2                 # PPO ratio clip, and value clip radius (normalised units)
    clip_value: bool = True
    gamma: float = 0.99
    lmbda: float = 0.95
    critic_coeff: float = 2.0         # on the squared error: Hora's 0.5 * critic_coef(4)
    entropy_coeff: float = 0.0
    bounds_coeff: float = 1e-4        # penalty on the action mean beyond +-bounds_limit
    bounds_limit: float = 1.1
    max_grad_norm: float = 1.0
    normalize_obs: bool = True        # running mean/var of the observation, clipped to +-obs_clip
    obs_clip: float = 5.0
    normalize_value: bool = True      # the critic predicts standardised returns
    normalize_advantage: bool = True  # over the whole batch of an iteration
    hidden: list[int] = field(default_factory=lambda: [512, 256, 128])
    critic_hidden: list[int] | None = None   # None: the critic shares the actor's trunk (Hora)
    activation: str = "elu"
    init_log_std: float = 0.0         # state-independent, learnable log standard deviation
    noise_correlation: float = 0.0    # AR(1) correlation of exploration noise between steps (0: white;
                                      # dexndm/rl/exploration.py)
    log_std_min: float | None = None  # floor on the policy's log std (keeps exploration alive); None: none
    log_std_max: float | None = None  # ceiling; None: none
    precision: str = "auto"           # bf16: the MLP trunks run in bfloat16 autocast (weights, normalisers,
                                      # heads, log-probs and the optimiser stay fp32; dexndm/rl/networks.py);
                                      # auto: bf16 where the device computes it natively, else fp32; a resumed
                                      # run keeps its checkpoint's (resolve_precision, PPOTrainer)

    def __post_init__(self) -> None:
        positive = ("horizon", "num_minibatches", "epochs", "lr", "kl_target", "min_lr", "max_lr", "clip",
                    "max_grad_norm", "obs_clip", "bounds_limit")
        bad = [k for k in positive if not getattr(self, k) > 0]
        if bad:
            raise ValueError(f"ppo: {bad} must be > 0, got {[getattr(self, k) for k in bad]}")
        if not 0.0 <= self.noise_correlation < 1.0:
            raise ValueError(f"ppo.noise_correlation must be in [0, 1), got {self.noise_correlation}")
        for name in ("gamma", "lmbda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ppo.{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.min_lr <= self.lr <= self.max_lr:
            raise ValueError(f"ppo.lr={self.lr} must lie in [min_lr, max_lr] = [{self.min_lr}, {self.max_lr}]")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"ppo.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"ppo.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"ppo.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        for name in ("critic_coeff", "entropy_coeff", "bounds_coeff"):
            if getattr(self, name) < 0:
                raise ValueError(f"ppo.{name} must be >= 0")
        if (self.log_std_min is not None and self.log_std_max is not None
                and self.log_std_min > self.log_std_max):
            raise ValueError(f"ppo.log_std_min={self.log_std_min} > ppo.log_std_max={self.log_std_max}")
        self.hidden = [int(h) for h in self.hidden]
        if self.critic_hidden is not None:
            self.critic_hidden = [int(h) for h in self.critic_hidden]
        if not self.hidden or min(self.hidden + (self.critic_hidden or [1])) < 1:
            raise ValueError("ppo.hidden (and ppo.critic_hidden) need at least one layer of width >= 1")

    @classmethod
    def from_dict(cls, data: dict | None) -> "PPOConfig":
        return from_mapping(cls, data, "ppo")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
