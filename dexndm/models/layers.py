"""Grouped (block-diagonal) layers: G independent networks evaluated as one batched op.

The joint-wise dynamics of DexNDM (Sec. 3.3) gives every joint its own network
f_{psi_i}; the finger-wise ablation (Sec. 4.2, Fig. 8) one per finger.  Running 16
``nn.Linear`` stacks in a Python loop costs 16 kernel launches per layer; here each
layer holds a ``[G, in, out]`` weight and evaluates all groups with one
``torch.baddbmm``.  Group g's output depends only on group g's input, by construction.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

#: Activations by config name.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "elu": nn.ELU, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh,
}


def activation_layer(name: str | Callable[[], nn.Module]) -> nn.Module:
    """An activation module from its config name (``"elu"``) or a zero-argument factory."""
    if callable(name):
        return name()
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; use one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class GroupedLinear(nn.Module):
    """G separate affine maps, ``[B, G, in] -> [B, G, out]``: ``y[:, g] = x[:, g] @ W[g] + b[g]``.

    ``weight`` is ``[G, in, out]`` (transposed relative to ``nn.Linear.weight``), ``bias``
    ``[G, out]``.  Each group is initialised as ``nn.Linear`` would be (kaiming-uniform
    with a=sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)), for weight and bias alike), so a
    grouped net starts from the same distribution as G separate ones.
    """

    def __init__(self, groups: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        if min(groups, in_features, out_features) < 1:
            raise ValueError(f"groups, in_features and out_features must be >= 1, got "
                             f"{groups}, {in_features}, {out_features}")
        self.groups, self.in_features, self.out_features = groups, in_features, out_features
        self.weight = nn.Parameter(torch.empty(groups, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(groups, out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.init.kaiming_uniform_ would compute fan_in from a 3-D tensor as in*out
        # (conv convention); bound it per group by the true fan-in instead.
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, G, in]`` -> ``[B, G, out]``."""
        if x.dim() != 3 or x.shape[1:] != (self.groups, self.in_features):
            raise ValueError(f"GroupedLinear expects [B, {self.groups}, {self.in_features}], got {tuple(x.shape)}")
        xg = x.transpose(0, 1)                                   # [G, B, in]
        if self.bias is None:
            y = torch.bmm(xg, self.weight)
        else:
            y = torch.baddbmm(self.bias.unsqueeze(1), xg, self.weight)  # [G, B, out]
        return y.transpose(0, 1)

    def extra_repr(self) -> str:
        return (f"groups={self.groups}, in_features={self.in_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


class GroupedMLP(nn.Module):
    """G independent MLPs ``[B, G, in] -> [B, G, out]``: ``depth`` hidden layers of width ``hidden``.

    ``depth=0`` is a single grouped linear map.  No normalisation layer mixes groups
    (or batch entries), so group g's output is a function of group g's input alone.
    """

    def __init__(self, groups: int, in_features: int, hidden: int, depth: int, out_features: int,
                 activation: str | Callable[[], nn.Module] = "elu"):
        super().__init__()
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self.groups, self.in_features, self.out_features = groups, in_features, out_features
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [GroupedLinear(groups, width, hidden), activation_layer(activation)]
            width = hidden
        layers.append(GroupedLinear(groups, width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, G, in]`` -> ``[B, G, out]``."""
        return self.net(x)
