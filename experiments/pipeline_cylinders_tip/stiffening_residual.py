"""A hand-written residual, not a learned one: a_res = M tanh(c (a - q) / M), saved as a residual checkpoint.

It asks whether a gap can be corrected by moving targets at all, independently of any dynamics model:
a hand whose position gain is a fraction g of the sim's presses with g (a - q) x kp for the same
command, and sending a + (1/g - 1)(a - q) restores that force (up to the torque limit).  If this
residual with the known c = 1/g - 1 does not win back what the gap costs, a learned residual cannot
either; if it does, what fails is the dynamics model a residual is learned through.

The network is an exact construction in ``ResidualNet``'s own layers (q and a standardised with mean
0 and std 1; the hidden layer is a_j - q_j + 10, where the ELU is the identity), so ``dexndm eval``
and deployment load it like any residual:

    PYTHONPATH=. python experiments/pipeline_cylinders_tip/stiffening_residual.py --gain 1.86 --max 0.15 \\
        --out outputs/stiffening_c1.86.ckpt
    dexndm eval 'policies={direct:"generalist:G",stiff:"generalist:G+residual:outputs/stiffening_c1.86.ckpt"}' ...
"""

from __future__ import annotations

import argparse

import torch

from dexndm.hand.constants import NUM_JOINTS as J
from dexndm.models.checkpoints import write_checkpoint
from dexndm.models.residual import ResidualModule

SHIFT = 10.0          # keeps the hidden layer's input positive (|a - q| < 10 rad), where ELU(x) = x


def stiffening_module(gain: float, max_residual: float) -> ResidualModule:
    module = ResidualModule(dynamics=torch.nn.Identity(), hidden=J, depth=1, max_residual=max_residual)
    net = module.res
    net.set_stats({"q_mean": 0.0, "q_std": 1.0, "a_mean": 0.0, "a_std": 1.0})
    first, last = net.mlp[0], net.mlp[-1]
    with torch.no_grad():
        first.weight.zero_()
        first.weight[:, :J] = -torch.eye(J)            # input: [q, a]
        first.weight[:, J:] = torch.eye(J)
        first.bias.fill_(SHIFT)
        last.weight.copy_(torch.eye(J) * gain / max_residual)
        last.bias.fill_(-SHIFT * gain / max_residual)
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gain", type=float, required=True, help="c in a_res = M tanh(c (a - q) / M)")
    p.add_argument("--max", type=float, default=0.15, help="M, the bound (rad)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    module = stiffening_module(args.gain, args.max)
    q, a = torch.zeros(2, J), torch.tensor([[0.01] * J, [-0.5] * J])
    expect = args.max * torch.tanh(args.gain * (a - q) / args.max)
    torch.testing.assert_close(module.res(q, a), expect, atol=1e-5, rtol=1e-4)
    write_checkpoint(module, args.out)
    print(f"wrote {args.out}: a_res = {args.max} tanh({args.gain} (a - q) / {args.max})")


if __name__ == "__main__":
    main()
