"""Dynamics-model training speed and data-loading speed, measured in the same run.

``jointwise_samples_per_s``   samples/s of one training step (forward, MSE in the
                              normalised target space, backward, Adam step) of
                              ``JointWiseDynamics`` (16 per-joint MLPs, one GroupedMLP).
``wholehand_samples_per_s``   the same for ``WholeHandDynamics`` at equal width/depth/W/batch.
``fingerwise_samples_per_s``, ``shared_samples_per_s``: the other two variants.
``jointwise_over_wholehand``  ratio of the two, same run.  Goal >= 0.8.  At equal width the
                              joint-wise model has 16 networks and ~10x the parameters and
                              arithmetic, so on a FLOP-bound CPU this ratio cannot reach the goal.
``jointwise_over_wholehand_equal_params``  the same ratio with the joint-wise width chosen so
                              that both models have (about) the same number of parameters
                              (``jointwise_equal_params_hidden``): the fair comparison of the
                              batched per-joint computation against one big MLP.
``loader_samples_per_s``      samples/s that ``TrajectoryDataModule.train_dataloader()``
                              (memory mode) yields on a synthetic HDF5 file (200 trajectories
                              x 400 steps; built in a temp dir, setup not timed).
``loader_over_training``      loader / joint-wise training rate.  Goal >= 10 (the loader
                              must not be the bottleneck).
Defaults: hidden 256, depth 3, W 10, batch 1024, on the CPU with torch's current thread
count (``threads``); variants alternate over 3 rounds, best round each.  ``quick``: one
round of few steps and a smaller file.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from dexndm.hand.constants import NUM_JOINTS
from dexndm.models.dynamics import build_dynamics

VARIANTS = ("jointwise", "wholehand", "fingerwise", "shared")


def _trainer_step(variant: str, window: int, hidden: int, depth: int, batch: int):
    """A closure running one forward + MSE + backward + Adam step on a fixed random batch."""
    torch.manual_seed(0)
    net = build_dynamics(variant, window=window, hidden=hidden, depth=depth)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    q_hist = torch.randn(batch, window, NUM_JOINTS)
    a_hist = torch.randn(batch, window, NUM_JOINTS)
    q_next = q_hist[:, -1] + 0.01 * torch.randn(batch, NUM_JOINTS)

    def step() -> None:
        pred = net.predict_normalized(q_hist, a_hist)
        loss = torch.nn.functional.mse_loss(pred, net.normalized_target(q_hist[:, -1], q_next))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _params(variant: str, window: int, hidden: int, depth: int) -> int:
    return sum(p.numel() for p in build_dynamics(variant, window=window, hidden=hidden, depth=depth).parameters())


def equal_params_hidden(window: int, hidden: int, depth: int) -> int:
    """Joint-wise width whose parameter count is closest to the whole-hand model's at ``hidden``."""
    target = _params("wholehand", window, hidden, depth)
    return min(range(8, hidden + 1), key=lambda h: abs(_params("jointwise", window, h, depth) - target))


def _training_rates(window: int, hidden: int, depth: int, batch: int, steps: int, rounds: int,
                    warmup: int = 2, extra: dict[str, int] | None = None) -> dict[str, float]:
    """Samples/s per variant (data already in memory).  Variants alternate over ``rounds``
    rounds of ``steps`` steps and the best round counts, so background load drifting during
    the run biases no variant against another."""
    steppers = {v: _trainer_step(v, window, hidden, depth, batch) for v in VARIANTS}
    for name, h in (extra or {}).items():           # name -> joint-wise width
        steppers[name] = _trainer_step("jointwise", window, h, depth, batch)
    for step in steppers.values():
        for _ in range(warmup):
            step()
    best = {v: 0.0 for v in steppers}
    for _ in range(rounds):
        for v, step in steppers.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            best[v] = max(best[v], batch * steps / (time.perf_counter() - start))
    return best


def _loader_rate(n_traj: int, T: int, window: int, batch: int, max_samples: int) -> float:
    """Samples/s of ``train_dataloader()`` (memory mode) over up to ``max_samples`` samples."""
    from datamodules import TrajectoryDataModule
    from dexndm.data.synthetic import write_random_file

    with tempfile.TemporaryDirectory(prefix="dexndm_bench_") as tmp:
        path = write_random_file(Path(tmp) / "bench.h5", n_traj, seed=0, lengths=(T, T), optional=False)
        dm = TrajectoryDataModule(files=[{"path": str(path), "name": "bench"}], kind="dynamics", window=window,
                                  batch_size=batch, split=0.9, seed=0, mode="memory")
        dm.setup()
        n, start = 0, time.perf_counter()
        for b in dm.train_dataloader():
            n += len(b["q_next"])
            if n >= max_samples:
                break
        return n / (time.perf_counter() - start)


def run(quick: bool = False, hidden: int = 256, depth: int = 3, window: int = 10, batch: int = 1024) -> dict:
    steps, rounds = (4, 1) if quick else (10, 3)
    out: dict = {"threads": torch.get_num_threads(), "hidden": hidden, "depth": depth, "window": window,
                 "batch": batch}
    h_eq = equal_params_hidden(window, hidden, depth)
    rates = _training_rates(window, hidden, depth, batch, steps, rounds, extra={"jointwise_equal_params": h_eq})
    for variant, rate in rates.items():
        out[f"{variant}_samples_per_s"] = rate
    out["jointwise_over_wholehand"] = out["jointwise_samples_per_s"] / out["wholehand_samples_per_s"]
    out["jointwise_equal_params_hidden"] = h_eq
    out["params"] = {v: _params(v, window, hidden, depth) for v in ("jointwise", "wholehand")} | {
        "jointwise_equal_params": _params("jointwise", window, h_eq, depth)}
    out["jointwise_over_wholehand_equal_params"] = (out["jointwise_equal_params_samples_per_s"]
                                                    / out["wholehand_samples_per_s"])
    n_traj, T = (20, 100) if quick else (200, 400)
    out["loader_samples_per_s"] = _loader_rate(n_traj, T, window, batch, max_samples=10 ** 9)
    out["loader_over_training"] = out["loader_samples_per_s"] / out["jointwise_samples_per_s"]
    return out


def main() -> int:
    import json

    print(json.dumps(run()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
