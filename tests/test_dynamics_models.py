"""Dynamics family (DexNDM Sec. 3.3, B.4): structure, grouped layers, learning, rollout."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from dexndm.hand.constants import FINGER_JOINTS, JOINT_FINGER, NUM_JOINTS
from dexndm.models import (
    DYNAMICS,
    GroupedLinear,
    GroupedMLP,
    build_dynamics,
    dynamics_stats,
    per_joint_error,
    rollout,
)

torch.set_num_threads(1)
J, W = NUM_JOINTS, 5
NAMES = sorted(DYNAMICS)


def _history(batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, W, J, generator=g), torch.randn(batch, W, J, generator=g)


# -- structure -------------------------------------------------------------------------

def _expected_dependents(name: str, j: int) -> set[int]:
    """Outputs that may (and, for a random net, do) depend on joint j's inputs."""
    if name in ("jointwise", "shared"):
        return {j}
    if name == "fingerwise":
        return set(FINGER_JOINTS[JOINT_FINGER[j]].tolist())
    return set(range(J))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("j", [0, 6, 13])
def test_perturbing_one_joint_changes_only_its_group(name, j):
    torch.manual_seed(0)
    model = build_dynamics(name, window=W, hidden=32, depth=2).eval()
    q, a = _history()
    base = model(q, a)
    for which in ("q", "a"):
        q2, a2 = q.clone(), a.clone()
        (q2 if which == "q" else a2)[:, :, j] += 0.5 * torch.randn(q.shape[0], W)
        changed = ((model(q2, a2) - base).abs() > 0).any(0).nonzero().flatten().tolist()
        assert set(changed) == _expected_dependents(name, j), (name, which, changed)


@pytest.mark.parametrize("name", NAMES)
def test_jacobian_block_structure_is_exact(name):
    """d out_i / d (q, a)_j is exactly zero outside the model's factorisation, nonzero inside."""
    torch.manual_seed(1)
    model = build_dynamics(name, window=W, hidden=16, depth=2).double().eval()
    q, a = (x[:1].double() for x in _history(seed=1))
    jq, ja = torch.autograd.functional.jacobian(lambda q_, a_: model(q_, a_)[0], (q, a))  # [16, 1, W, 16]
    dep = (jq.abs() + ja.abs()).squeeze(1).sum(1)                                        # [out 16, in 16]
    mask = torch.zeros(J, J, dtype=torch.bool)
    for j in range(J):
        mask[sorted(_expected_dependents(name, j)), j] = True
    assert torch.all(dep[~mask] == 0), name
    assert torch.all(dep[mask] > 0), name


def test_shared_model_uses_one_set_of_weights():
    torch.manual_seed(2)
    model = build_dynamics("shared", window=W, hidden=16, depth=1)
    q, a = _history(batch=1)
    # the same history on two joints gives the same prediction (no per-joint weights)
    q[:, :, 5], a[:, :, 5] = q[:, :, 2], a[:, :, 2]
    out = model.predict_normalized(q, a)
    assert torch.allclose(out[0, 5], out[0, 2])
    tagged = build_dynamics("shared", window=W, hidden=16, depth=1, joint_id=True)
    out = tagged.predict_normalized(q, a)
    assert not torch.allclose(out[0, 5], out[0, 2])
    assert sum(p.numel() for p in model.parameters()) < sum(
        p.numel() for p in build_dynamics("jointwise", window=W, hidden=16, depth=1).parameters())


# -- grouped layers --------------------------------------------------------------------

def test_grouped_linear_equals_separate_linears():
    torch.manual_seed(3)
    G, fin, fout = 16, 10, 7
    linears = [nn.Linear(fin, fout) for _ in range(G)]
    grouped = GroupedLinear(G, fin, fout)
    with torch.no_grad():
        grouped.weight.copy_(torch.stack([l.weight.T for l in linears]))
        grouped.bias.copy_(torch.stack([l.bias for l in linears]))
    x = torch.randn(8, G, fin)
    expected = torch.stack([l(x[:, g]) for g, l in enumerate(linears)], dim=1)
    assert torch.allclose(grouped(x), expected, atol=1e-6)


def test_grouped_init_matches_nn_linear_per_group():
    torch.manual_seed(4)
    layer = GroupedLinear(16, 64, 128)
    bound = 1 / 64 ** 0.5
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    std = layer.weight.flatten(1).std(1)                         # per group
    assert torch.allclose(std, torch.full((16,), bound / 3 ** 0.5), rtol=0.1)
    assert not torch.allclose(layer.weight[0], layer.weight[1])  # groups initialised independently
    mlp = GroupedMLP(4, 6, 32, 3, 2, "relu")
    assert mlp(torch.randn(5, 4, 6)).shape == (5, 4, 2)
    with pytest.raises(ValueError, match="expects"):
        layer(torch.randn(5, 15, 64))


# -- API errors ------------------------------------------------------------------------

def test_unknown_name_lists_choices():
    with pytest.raises(ValueError) as err:
        build_dynamics("transformer", window=W)
    for name in DYNAMICS:
        assert name in str(err.value)


def test_bad_shapes_and_stats_raise():
    model = build_dynamics("jointwise", window=W, hidden=8, depth=1)
    q, a = _history()
    with pytest.raises(ValueError, match="expects"):
        model(q[:, 1:], a[:, 1:])
    with pytest.raises(ValueError, match="dq_std"):
        model.set_stats({"q_mean": 0.0})


def test_stats_are_buffers_and_round_trip():
    q, a = _history(batch=4)
    stats = dynamics_stats(q, a)
    model = build_dynamics("fingerwise", window=W, hidden=8, depth=1, stats=stats)
    sd = model.state_dict()
    assert all(torch.equal(sd[k], stats[k]) for k in stats)
    clone = build_dynamics(**model.config())
    clone.load_state_dict(sd)
    assert torch.equal(clone(q, a), model(q, a))


# -- learning on synthetic second-order joints -------------------------------------------

DT = 0.05


def _synthetic(n: int, T: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PD-driven second-order joints with a weak inter-joint coupling; square-wave targets.

    v_{t+1} = v_t + dt (kp_i (a_t - q_t) - kd_i v_t) + dt c (mean_{k != i} q_t^k - q_t^i),
    q_{t+1} = q_t + dt v_t.  Returns ``q [n, T+1, 16]`` and ``a [n, T, 16]``.
    """
    g = torch.Generator().manual_seed(seed)
    kp = 20 + 40 * torch.rand(J, generator=torch.Generator().manual_seed(123))
    kd = 4 + 6 * torch.rand(J, generator=torch.Generator().manual_seed(124))
    c = 2.0
    t = torch.arange(T).float()
    amp = 0.3 + 0.7 * torch.rand(n, 1, J, generator=g)
    offset = -0.2 + 0.7 * torch.rand(n, 1, J, generator=g)
    period = 6 + 14 * torch.rand(n, 1, J, generator=g)
    phase = 6.283 * torch.rand(n, 1, J, generator=g)
    a = offset + amp * torch.sign(torch.sin(6.283 * t[None, :, None] / period + phase))
    q = torch.zeros(n, T + 1, J)
    q[:, 0] = offset[:, 0] + 0.1 * torch.randn(n, J, generator=g)
    v = torch.zeros(n, J)
    for k in range(T):
        qk = q[:, k]
        others = (qk.sum(-1, keepdim=True) - qk) / (J - 1)
        q[:, k + 1] = qk + DT * v
        v = v + DT * (kp * (a[:, k] - qk) - kd * v) + DT * c * (others - qk)
    return q, a


def _windows(q: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """All (q_hist, a_hist, q_next) windows ``[N, W, 16] x2, [N, 16]``."""
    T = a.shape[1]
    idx = torch.arange(W - 1, T)
    steps = idx[:, None] - torch.arange(W - 1, -1, -1)[None]           # [n_t, W]
    qh, ah = q[:, steps].flatten(0, 1), a[:, steps].flatten(0, 1)
    return qh, ah, q[:, idx + 1].flatten(0, 1)


def _train(name: str, data, stats, steps: int = 400, seed: int = 0) -> nn.Module:
    qh, ah, qn = data
    torch.manual_seed(seed)
    model = build_dynamics(name, window=W, hidden=64, depth=2, stats=stats)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        b = torch.randint(0, qh.shape[0], (256,), generator=g)
        pred = model.predict_normalized(qh[b], ah[b])
        loss = (pred - model.normalized_target(qh[b, -1], qn[b])).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained():
    q, a = _synthetic(200, 40, seed=0)
    q_test, a_test = _synthetic(40, 40, seed=1)
    stats = dynamics_stats(q[:, :-1], a)
    train = _windows(q, a)
    models, seconds = {}, {}
    for name in NAMES:
        start = time.perf_counter()
        models[name] = _train(name, train, stats)
        seconds[name] = time.perf_counter() - start
    return models, seconds, (q_test, a_test)


@pytest.mark.parametrize("name", NAMES)
def test_each_model_learns_one_step_dynamics(trained, name):
    models, seconds, (q_test, a_test) = trained
    qh, ah, qn = _windows(q_test, a_test)
    with torch.no_grad():
        err = per_joint_error(models[name](qh, ah), qn)
    baseline = per_joint_error(qh[:, -1], qn)                  # predict q_{t+1} = q_t
    assert err.shape == (J,) and torch.isfinite(err).all()
    ratio = (err.mean() / baseline.mean()).item()
    print(f"{name}: one-step MAE {err.mean():.5f} rad vs hold {baseline.mean():.5f} "
          f"(ratio {ratio:.3f}, {seconds[name]:.1f} s)")
    assert ratio < 0.3, (name, ratio)


def test_rollout_shapes_and_consistency(trained):
    model = trained[0]["jointwise"]
    q_test, a_test = trained[2]
    t, H = 10, 8
    q_hist, a_hist, fut = q_test[:, t - W + 1:t + 1], a_test[:, t - W:t], a_test[:, t:t + H]
    with torch.no_grad():
        out = rollout(model, q_hist, a_hist, fut)
        first = model(q_hist, torch.cat((a_hist[:, 1:], fut[:, :1]), dim=1))
    assert out.shape == (q_test.shape[0], H, J)
    assert torch.allclose(out[:, 0], first)
    with pytest.raises(ValueError, match="q_hist"):
        rollout(model, q_hist[:, 1:], a_hist, fut)


@pytest.mark.parametrize("name", ["jointwise", "wholehand"])
def test_multistep_error_grows_but_stays_bounded(trained, name):
    model = trained[0][name]
    q_test, a_test = trained[2]
    t, H = W, 15
    with torch.no_grad():
        pred = rollout(model, q_test[:, t - W + 1:t + 1], a_test[:, t - W:t], a_test[:, t:t + H])
    target = q_test[:, t + 1:t + H + 1]
    err = (pred - target).abs().mean(dim=(0, 2))               # [H]
    hold = (q_test[:, t:t + 1] - target).abs().mean(dim=(0, 2))
    print(f"{name}: rollout MAE step 1 {err[0]:.4f}, step {H} {err[-1]:.4f} (hold {hold[-1]:.4f})")
    assert torch.isfinite(err).all()
    assert err[-1] > err[0]
    assert err[-1] < 0.5 * hold[-1]                            # still far better than not moving
