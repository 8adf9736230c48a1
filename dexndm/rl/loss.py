"""The oracle's PPO objective and learning-rate schedule (DexNDM Sec. 3.1, Appendix C).

``OraclePPOLoss`` is TorchRL's ``ClipPPOLoss`` plus what Hora's PPO adds:

* the critic regresses *standardised* returns: targets, predictions and old values go
  through the value normaliser before the (clipped) squared error, via ``ClipPPOLoss``'s
  ``_critic_loss_inputs`` hook;
* a bounds loss on the Gaussian mean beyond +-``bounds_limit`` (Hora's intended
  penalty; its code clamps the wrong side and in effect pulls every mean towards 0);
* the analytic Gaussian KL between the policy that produced the stored ``loc``/``scale``
  and the current one, which drives ``AdaptiveLR``.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.objectives import ClipPPOLoss

from dexndm.rl.normalizer import RunningNorm


def gaussian_kl(loc0: torch.Tensor, scale0: torch.Tensor, loc1: torch.Tensor, scale1: torch.Tensor) -> torch.Tensor:
    """KL(N0 || N1) of diagonal Gaussians, summed over the last dim: ``[B, A]`` -> ``[B]``."""
    kl = torch.log(scale1 / scale0) + (scale0.pow(2) + (loc0 - loc1).pow(2)) / (2.0 * scale1.pow(2)) - 0.5
    return kl.sum(-1)


class OraclePPOLoss(ClipPPOLoss):
    """Clipped PPO with value normalisation, a bounds loss and an analytic KL.

    Output keys added to ``ClipPPOLoss``'s: ``loss_bounds`` (already weighted), ``kl``
    (mean analytic KL to the stored ``loc``/``scale``), and ``loc``/``scale`` ``[B, A]``
    of the current policy (detached), which the trainer writes back for the next epoch.
    """

    def __init__(self, actor, critic, *, value_norm: RunningNorm, bounds_coeff: float, bounds_limit: float,
                 **kwargs):
        super().__init__(actor, critic, functional=False, **kwargs)
        self.value_norm = value_norm
        self.bounds_coeff = float(bounds_coeff)
        self.bounds_limit = float(bounds_limit)
        self._dist = None

    def _critic_loss_inputs(self, target_return, state_value, old_state_value):
        vn = self.value_norm
        old = vn.normalize(old_state_value) if old_state_value is not None else None
        return vn.normalize(target_return), vn.normalize(state_value), old

    def _log_weight(self, tensordict: TensorDictBase, adv_shape: torch.Size):
        out = super()._log_weight(tensordict, adv_shape)
        self._dist = out[1]
        return out

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        out = super().forward(tensordict)
        dist, self._dist = self._dist, None
        loc, scale = dist.mean, dist.stddev
        lim = self.bounds_limit
        excess = (loc - lim).clamp_min(0).pow(2) + (-loc - lim).clamp_min(0).pow(2)
        out.set("loss_bounds", self.bounds_coeff * excess.sum(-1).mean())
        with torch.no_grad():
            out.set("kl", gaussian_kl(tensordict["loc"], tensordict["scale"], loc, scale).mean())
        out.set("loc", loc.detach())
        out.set("scale", scale.detach())
        return out


class AdaptiveLR:
    """Hora/rl_games adaptive learning rate: after each epoch, lr / 1.5 if KL > 2 * target,
    lr * 1.5 if KL < target / 2, within [min_lr, max_lr].  ``fixed`` keeps lr constant."""

    def __init__(self, lr: float, kl_target: float, min_lr: float, max_lr: float, mode: str = "adaptive"):
        self.lr, self.kl_target, self.min_lr, self.max_lr, self.mode = lr, kl_target, min_lr, max_lr, mode

    def update(self, kl: float) -> float:
        if self.mode == "adaptive":
            if kl > 2.0 * self.kl_target:
                self.lr = max(self.lr / 1.5, self.min_lr)
            elif kl < 0.5 * self.kl_target:
                self.lr = min(self.lr * 1.5, self.max_lr)
        return self.lr

    def apply(self, optimizer: torch.optim.Optimizer) -> None:
        for group in optimizer.param_groups:
            group["lr"] = self.lr

    def state_dict(self) -> dict:
        return {"lr": float(self.lr), "kl_target": float(self.kl_target), "min_lr": float(self.min_lr),
                "max_lr": float(self.max_lr), "mode": self.mode}

    def load_state_dict(self, state: dict) -> None:
        self.lr = float(state["lr"])
