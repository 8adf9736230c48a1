"""Running mean/variance normalisers for observations and values (DexNDM Sec. 3.1 oracle training).

As in Hora/rl_games, the oracle's observation is standardised with statistics gathered
during training and clipped to +-``clip``; the critic predicts standardised returns.
Statistics are buffers (float64: mean, var, count), so they travel in the model's
``state_dict`` and therefore in every checkpoint and deploy bundle.  ``forward`` never
updates them: the trainer calls :meth:`RunningNorm.update` once per iteration with the
collected batch, so evaluation and deployment always see frozen statistics.
"""

from __future__ import annotations

import torch
from torch import nn


class RunningNorm(nn.Module):
    """Per-feature running mean/variance (parallel Welford merge); ``shape`` is the feature shape."""

    def __init__(self, shape: int | tuple[int, ...], clip: float | None = None, eps: float = 1e-5,
                 enabled: bool = True):
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.clip = clip
        self.eps = eps
        self.enabled = enabled
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold a batch ``[..., *shape]`` into the statistics (no-op when disabled)."""
        if not self.enabled:
            return
        x = x.detach().to(self.mean.device, torch.float64).reshape(-1, *self.mean.shape)
        n = x.shape[0]
        if n == 0:
            return
        b_mean = x.mean(0)
        b_var = x.var(0, unbiased=False)
        total = self.count + n
        delta = b_mean - self.mean
        m2 = self.var * self.count + b_var * n + delta.pow(2) * self.count * n / total
        self.mean.add_(delta * n / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean.to(like.dtype), (self.var + self.eps).sqrt().to(like.dtype)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        mean, std = self._stats(x)
        y = (x - mean) / std
        return y.clamp(-self.clip, self.clip) if self.clip is not None else y

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return y
        mean, std = self._stats(y)
        return y * std + mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x)

    def stats(self) -> dict[str, torch.Tensor]:
        """Plain tensors (for checkpoint metadata)."""
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count.clone()}

    def extra_repr(self) -> str:
        return f"shape={tuple(self.mean.shape)}, clip={self.clip}, enabled={self.enabled}"
