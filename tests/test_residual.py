"""Residual policy (DexNDM Sec. 3.3): trained through a frozen dynamics model it closes a
synthetic actuator gap.

Target domain ("real"): each joint reaches only 70% of its commanded step,
q_{t+1} = q_t + 0.7 (a_t - q_t).  Sim: perfect tracking, q_{t+1} = a_t.  The frozen dynamics
is the ANALYTIC target rule (``GapDynamics``, gain held as an nn.Parameter so that freezing
is checkable), not a fitted network; the checkpoint path through ``load_dynamics`` is
exercised separately with an (untrained) joint-wise DynamicsModule checkpoint.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dexndm.models.dynamics import dynamics_stats
from dexndm.models.lit_dynamics import DynamicsModule
from dexndm.models.residual import ResidualModule, ResidualNet, load_residual

torch.set_num_threads(1)
W, GAIN = 3, 0.7


class GapDynamics(nn.Module):
    """q_{t+1} = q_t + gain * (a_t - q_t), per joint."""

    def __init__(self, gain: float = GAIN):
        super().__init__()
        self.gain = nn.Parameter(torch.full((16,), gain))

    def forward(self, q_hist, a_hist):
        q = q_hist[:, -1]
        return q + self.gain * (a_hist[:, -1] - q)


def sim_windows(n_traj: int, T: int, seed: int, window: int = W) -> dict[str, torch.Tensor]:
    """Sim trajectories (q_{t+1} = a_t, a_t = q_t + step) cut into windows of ``window`` steps."""
    g = torch.Generator().manual_seed(seed)
    q = torch.empty(n_traj, T + 1, 16)
    q[:, 0] = torch.rand(n_traj, 16, generator=g) * 1.5 - 0.3
    steps = (torch.rand(n_traj, T, 16, generator=g) * 2 - 1) * 0.2
    a = torch.empty(n_traj, T, 16)
    for t in range(T):
        a[:, t] = q[:, t] + steps[:, t]
        q[:, t + 1] = a[:, t]
    idx = torch.arange(window - 1, T)
    q_hist = torch.stack([q[:, t - window + 1:t + 1] for t in idx], 1).flatten(0, 1)
    a_hist = torch.stack([a[:, t - window + 1:t + 1] for t in idx], 1).flatten(0, 1)
    q_next = q[:, idx + 1].flatten(0, 1)
    return {"q_hist": q_hist, "a_hist": a_hist, "q_next": q_next}


class _Windows(Dataset):
    def __init__(self, d):
        self.d = d

    def __len__(self):
        return len(self.d["q_next"])

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.d.items()}


def _fit(model, data, epochs=12):
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, enable_checkpointing=False)
    trainer.fit(model, train_dataloaders=DataLoader(_Windows(data), batch_size=256, shuffle=True))
    return trainer


@pytest.fixture(scope="module")
def data():
    return sim_windows(128, 20, seed=0), sim_windows(32, 20, seed=1)


@pytest.fixture(scope="module")
def trained(data):
    train, _ = data
    L.seed_everything(0, verbose=False)
    dyn = GapDynamics()
    model = ResidualModule(dynamics=dyn, res_weight=0.0, max_residual=0.3, lr=3e-3, hidden=64, depth=2)
    model.res.set_stats(dynamics_stats(train["q_hist"], train["a_hist"]))
    trainer = _fit(model, train)
    return model, trainer


def _tracking_error(net: ResidualNet | None, d) -> float:
    """Mean |q_next in the target domain - q_next in sim| executing a (net None) or a + a_res."""
    rule = GapDynamics()
    a = d["a_hist"]
    if net is not None:
        with torch.no_grad():
            a = a + net(d["q_hist"], d["a_hist"])
    with torch.no_grad():
        return float((rule(d["q_hist"], a) - d["q_next"]).abs().mean())


def test_residual_closes_actuator_gap(trained, data, tmp_path):
    model, trainer = trained
    _, held_out = data
    model.eval()
    base, corrected = _tracking_error(None, held_out), _tracking_error(model.res, held_out)
    print(f"tracking error: a {base:.5f} rad, a + a_res {corrected:.5f} rad, ratio {corrected / base:.3f}")
    assert corrected / base < 0.5, (base, corrected)
    assert {"train/loss_epoch", "train/track_epoch", "train/res_sq_epoch"} <= set(trainer.callback_metrics)
    # the residual is bounded by max_residual
    assert model.res(held_out["q_hist"] * 50, held_out["a_hist"] * -50).abs().max() <= 0.3 + 1e-6
    # checkpoint round trip (weights_only) gives the same deployment command a + a_res
    path = tmp_path / "res.ckpt"
    trainer.save_checkpoint(path)
    net, meta = load_residual(path)
    assert meta["config"]["max_residual"] == 0.3 and meta["control_rate_hz"] == 20.0
    q, a = held_out["q_hist"][:, -1], held_out["a_hist"][:, -1]
    assert torch.allclose(net.correct(q, a), a + model.res(q, a).detach(), atol=1e-6)


def test_dynamics_stays_frozen(trained):
    model, _ = trained
    assert torch.equal(model.dynamics.gain, torch.full((16,), GAIN))      # gradient flowed through, not into it
    assert not any(p.requires_grad for p in model.dynamics.parameters())
    assert not model.dynamics.training
    opt_params = {id(p) for g in model.configure_optimizers().param_groups for p in g["params"]}
    assert opt_params == {id(p) for p in model.res.parameters()}


def test_size_penalty_shrinks_residual(data):
    train, held_out = data
    norms = {}
    for w in (0.0, 1.0):
        L.seed_everything(0, verbose=False)
        model = ResidualModule(dynamics=GapDynamics(), res_weight=w, max_residual=0.3, lr=3e-3, hidden=64, depth=2)
        model.res.set_stats(dynamics_stats(train["q_hist"], train["a_hist"]))
        _fit(model, train, epochs=4)
        with torch.no_grad():
            norms[w] = float(model.res(held_out["q_hist"], held_out["a_hist"]).norm(dim=-1).mean())
    print(f"mean ||a_res||: res_weight 0 -> {norms[0.0]:.4f}, res_weight 1 -> {norms[1.0]:.4f}")
    assert norms[1.0] < 0.6 * norms[0.0], norms


def test_loads_dynamics_checkpoint(data, tmp_path):
    """dynamics_ckpt path: load_dynamics, frozen, residual stats from the dynamics buffers."""
    train, _ = data
    stats = dynamics_stats(train["q_hist"], train["a_hist"])
    dm = DynamicsModule("jointwise", window=W, hidden=8, depth=1, stats=stats)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(dm, train_dataloaders=DataLoader(_Windows(train), batch_size=64))
    ckpt = tmp_path / "dyn.ckpt"
    trainer.save_checkpoint(ckpt)
    model = ResidualModule(dynamics_ckpt=str(ckpt), hidden=16, depth=1)
    assert torch.allclose(model.res.q_std, model.dynamics.q_std)
    before = {k: v.clone() for k, v in model.dynamics.state_dict().items()}
    _fit(model, {k: v[:512] for k, v in train.items()}, epochs=1)
    assert all(torch.equal(before[k], v) for k, v in model.dynamics.state_dict().items())
    assert model.res.mlp[-1].weight.abs().sum() > 0                       # the residual did train
    with pytest.raises(ValueError, match="exactly one"):
        ResidualModule()


def target_windows(n_traj: int, T: int, seed: int) -> dict[str, torch.Tensor]:
    """Target-domain trajectories (q_{t+1} = q_t + 0.7 (a_t - q_t)) with random commands around q."""
    g = torch.Generator().manual_seed(seed)
    q = torch.empty(n_traj, T + 1, 16)
    q[:, 0] = torch.rand(n_traj, 16, generator=g) * 1.5 - 0.3
    a = q[:, :T] + 0.0
    for t in range(T):
        a[:, t] = q[:, t] + (torch.rand(n_traj, 16, generator=g) * 2 - 1) * 0.35
        q[:, t + 1] = q[:, t] + GAIN * (a[:, t] - q[:, t])
    idx = torch.arange(W - 1, T)
    return {"q_hist": torch.stack([q[:, t - W + 1:t + 1] for t in idx], 1).flatten(0, 1),
            "a_hist": torch.stack([a[:, t - W + 1:t + 1] for t in idx], 1).flatten(0, 1),
            "q_next": q[:, idx + 1].flatten(0, 1)}


def test_residual_through_fitted_jointwise_dynamics(data):
    """Same gap, but f_psi is a joint-wise network fitted on target-domain data (not the analytic rule)."""
    train, held_out = data
    real = target_windows(128, 20, seed=2)
    dq = real["q_next"] - real["q_hist"][:, -1]
    stats = {**dynamics_stats(real["q_hist"], real["a_hist"]), "dq_mean": dq.mean(0), "dq_std": dq.std(0)}
    dyn = DynamicsModule("jointwise", window=W, hidden=32, depth=2, lr=3e-3, stats=stats)
    _fit(dyn, real, epochs=10)
    fitted = dyn.net.eval()
    with torch.no_grad():
        dyn_err = float((fitted(held_out["q_hist"], held_out["a_hist"]) -
                         GapDynamics()(held_out["q_hist"], held_out["a_hist"])).abs().mean())
    L.seed_everything(0, verbose=False)
    model = ResidualModule(dynamics=fitted, res_weight=0.0, max_residual=0.3, lr=3e-3, hidden=64, depth=2)
    _fit(model, train)
    model.eval()
    base, corrected = _tracking_error(None, held_out), _tracking_error(model.res, held_out)
    print(f"fitted jointwise f_psi (err vs rule on sim windows {dyn_err:.5f} rad): tracking error "
          f"a {base:.5f}, a + a_res {corrected:.5f}, ratio {corrected / base:.3f}")
    assert corrected / base < 0.5, (base, corrected, dyn_err)


class DragDynamics(nn.Module):
    """A gap that depends on how the joint moves: q_{t+1} = q_t + gain (a_t - q_t) - drag (q_t - q_{t-1})."""

    def __init__(self, gain: float = GAIN, drag: float = 0.5):
        super().__init__()
        self.gain, self.drag = gain, drag

    def forward(self, q_hist, a_hist):
        q, q_prev = q_hist[:, -1], q_hist[:, -2]
        return q + self.gain * (a_hist[:, -1] - q) - self.drag * (q - q_prev)


def test_history_lets_the_residual_undo_a_gap_that_depends_on_joint_velocity():
    """The command that makes the drag domain track sim needs q_{t-1}: a residual reading 2 steps cuts
    the tracking error by more than half, one reading the current step only cannot."""
    from dexndm.models.residual import split_history, training_window

    errors = {}
    for history in (1, 2):
        window = training_window(W, history)
        train, held = sim_windows(128, 20, 0, window), sim_windows(32, 20, 1, window)
        L.seed_everything(0, verbose=False)
        model = ResidualModule(dynamics=DragDynamics(), res_weight=0.0, max_residual=0.3, lr=3e-3, hidden=64,
                               depth=2, history=history)
        model.res.set_stats(dynamics_stats(train["q_hist"], train["a_hist"]))
        _fit(model, train, epochs=15)
        model.eval()
        q, a, past = split_history(held["q_hist"], held["a_hist"], history)
        with torch.no_grad():
            res = model.res(q, a, None, past)
            errors[history] = [float((DragDynamics()(q, a + r) - held["q_next"]).abs().mean()) for r in (0 * res, res)]
    print(f"drag gap tracking error (a, a + a_res): history 1 {errors[1]}, history 2 {errors[2]}")
    assert errors[2][1] < 0.5 * errors[2][0], errors
    assert errors[2][1] < 0.5 * errors[1][1], errors
    with pytest.raises(ValueError, match="data.window=4"):       # windows cut for the dynamics alone
        ResidualModule(dynamics=DynamicsModule("jointwise", window=W, hidden=8, depth=1).net,
                       history=2).losses(sim_windows(2, 6, 0))


class _ExactInverse(ResidualNet):
    """The residual that makes GapDynamics track sim exactly: a_res = (a - q)(1 / gain - 1)."""

    def forward(self, q, a, obs=None, past=None):
        return (a - q) * (1.0 / GAIN - 1.0)


def test_horizon_one_rollout_is_the_one_step_objective(data):
    """rollout_track with H = 1 computes the same loss and residuals as the one-step path."""
    train, _ = data
    batch = {k: v[:64] for k, v in train.items()}
    L.seed_everything(0, verbose=False)
    model = ResidualModule(dynamics=DynamicsModule("jointwise", window=W, hidden=8, depth=1).net, hidden=16, depth=1)
    torch.nn.init.normal_(model.res.mlp[-1].weight, std=0.5)
    track, a_res = model.rollout_track(batch)
    q_hist, a_hist, res = model.residual(batch)
    torch.testing.assert_close(track, model._track(q_hist, a_hist + res, batch["q_next"]))
    torch.testing.assert_close(a_res, res)


def test_rollout_feeds_predictions_back_and_compounds_the_gap():
    """Over a horizon the uncorrected target hand falls further behind sim step after step; the exact
    inverse residual, applied to the model's own predicted states, keeps the rollout on the sim path."""
    from dexndm.models.residual import training_window

    zero_loss = {}
    for horizon in (1, 2, 5):
        d = sim_windows(16, 20, seed=3, window=training_window(W, 1, horizon))
        model = ResidualModule(dynamics=GapDynamics(), hidden=8, depth=1, horizon=horizon)
        zero_loss[horizon] = float(model.rollout_track(d, with_residual=False)[0])
        model.res = _ExactInverse(hidden=8, depth=1, max_residual=1.0)
        loss, a_res = model.rollout_track(d)
        assert float(loss) < 1e-10 and a_res.shape == (len(d["q_next"]), W + horizon - 1, 16)
    print(f"uncorrected rollout loss by horizon: {zero_loss}")
    assert zero_loss[1] < zero_loss[2] < zero_loss[5], zero_loss
    with pytest.raises(ValueError, match="data.window=7"):
        ResidualModule(dynamics=DynamicsModule("jointwise", window=W, hidden=8, depth=1).net,
                       horizon=5).losses(sim_windows(2, 6, 0))


def _closed_loop_error(net: ResidualNet, dyn: nn.Module, d: dict, horizon: int) -> float:
    """Mean |q_target - q_sim| over ``horizon`` steps when the target rule runs a (+ a_res) from the
    window's first W sim states, the residual reading the target's own states."""
    q = list(d["q_hist"][:, :W].unbind(1))
    a = d["a_hist"]
    q_sim = torch.cat((d["q_hist"], d["q_next"].unsqueeze(1)), 1)
    errs = []
    with torch.no_grad():
        cmds = [a[:, j] + net(q[j], a[:, j]) for j in range(W)]
        for c in range(W - 1, W - 1 + horizon):
            if c >= W:
                cmds.append(a[:, c] + net(q[c], a[:, c]))
            q.append(dyn(torch.stack(q[c - W + 1:c + 1], 1), torch.stack(cmds[c - W + 1:c + 1], 1)))
            errs.append((q[-1] - q_sim[:, c + 1]).abs().mean())
    return float(torch.stack(errs).mean())


def test_multi_step_objective_trains_a_residual_that_tracks_in_closed_loop():
    """Trained over a 4-step horizon through the actuator gap, the residual keeps the target hand on the sim
    path in closed loop (reading the target's own states for 4 steps), as the one-step residual does."""
    from dexndm.models.residual import training_window

    held = sim_windows(32, 24, 1, training_window(W, 1, 4))
    zero = _closed_loop_error(ResidualNet(hidden=8, depth=1), GapDynamics(), held, 4)
    errors = {}
    for horizon in (1, 4):
        train = sim_windows(128, 24, 0, training_window(W, 1, horizon))
        L.seed_everything(0, verbose=False)
        model = ResidualModule(dynamics=GapDynamics(), res_weight=0.0, max_residual=0.3, lr=3e-3, hidden=64,
                               depth=2, horizon=horizon)
        model.res.set_stats(dynamics_stats(train["q_hist"], train["a_hist"]))
        _fit(model, train, epochs=12)
        errors[horizon] = _closed_loop_error(model.eval().res, GapDynamics(), held, 4)
        assert torch.equal(model.dynamics.gain, torch.full((16,), GAIN))     # still frozen through the rollout
    print(f"closed-loop 4-step tracking error: a {zero:.5f}, a + a_res by training horizon {errors}")
    assert errors[4] < 0.5 * zero, (zero, errors)
    assert errors[4] < 1.5 * errors[1], (zero, errors)


def test_reference_model_replaces_the_sim_target_and_cancels_shared_model_error():
    """With a source-domain reference model, the residual tracks f_src(q, a), not the sim's q_next: a model
    error shared by the target and the reference model (here a constant bias in both) drops out, and the
    residual undoes only the gap between them (gain 0.7 against 1.0)."""
    from dexndm.models.dynamics import DynamicsModel
    from dexndm.models.residual import training_window

    class Biased(DynamicsModel):
        """An analytic 'fitted' model: q + gain (a - q) + bias, as a DynamicsModel (window W, absolute output)."""

        def __init__(self, gain: float, bias: float):
            super().__init__(window=W)
            self.gain, self.bias = gain, bias

        def _core(self, qn, an):
            q, a = qn[:, -1] * self.q_std + self.q_mean, an[:, -1] * self.a_std + self.a_mean
            return (q + self.gain * (a - q) + self.bias - self.q_mean) / self.q_std

    train = sim_windows(128, 20, 0, W)
    fits = {}
    for ref in (None, Biased(1.0, 0.02)):
        L.seed_everything(0, verbose=False)
        model = ResidualModule(dynamics=Biased(GAIN, 0.02), reference=ref, res_weight=0.0, max_residual=0.3,
                               lr=3e-3, hidden=64, depth=2)
        model.res.set_stats(dynamics_stats(train["q_hist"], train["a_hist"]))
        _fit(model, train, epochs=12)
        with torch.no_grad():
            q, a = train["q_hist"][:, -1], train["a_hist"][:, -1]
            exact = (a - q) * (1.0 / GAIN - 1.0)                           # what undoes the gap alone
            fits["with" if ref is not None else "without"] = float((model.res(q, a) - exact).abs().mean())
    print(f"|a_res - gap-only correction| without / with the reference: {fits}")
    assert fits["with"] < 0.1 * fits["without"], fits
    # over a horizon the reference is rolled out too: the gap-only correction then tracks it exactly
    d = sim_windows(16, 20, 3, training_window(W, 1, 4))
    rolled = ResidualModule(dynamics=Biased(GAIN, 0.02), reference=Biased(1.0, 0.02), hidden=8, depth=1, horizon=4)
    rolled.res = _ExactInverse(hidden=8, depth=1, max_residual=1.0)
    assert float(rolled.rollout_track(d)[0]) < 1e-9
    assert float(rolled.rollout_track(d, with_residual=False)[0]) > 1e-3
    assert not any(p.requires_grad for p in model.reference.parameters())
    with pytest.raises(ValueError, match="at most one"):
        ResidualModule(dynamics=GapDynamics(), reference=GapDynamics(), reference_ckpt="x.ckpt")


def test_mean_penalty_removes_the_constant_offset_a_biased_model_asks_for():
    """Through a model biased by a constant 0.02 rad per step, the residual learns a constant per-joint offset to
    cancel it; mean_weight penalises that per-joint mean, and the learned offset shrinks."""
    train = sim_windows(128, 20, 0, W)

    class Biased(GapDynamics):
        def forward(self, q_hist, a_hist):
            return super().forward(q_hist, a_hist) + 0.02

    offsets = {}
    for weight in (0.0, 100.0):
        L.seed_everything(0, verbose=False)
        model = ResidualModule(dynamics=Biased(), res_weight=0.0, max_residual=0.3, lr=3e-3, hidden=64, depth=2,
                               mean_weight=weight)
        model.res.set_stats(dynamics_stats(train["q_hist"], train["a_hist"]))
        trainer = _fit(model, train, epochs=8)
        with torch.no_grad():
            offsets[weight] = float(model.res(train["q_hist"][:, -1], train["a_hist"][:, -1]).mean(0).abs().mean())
    print(f"mean |per-joint mean of a_res|: mean_weight 0 -> {offsets[0.0]:.4f}, 100 -> {offsets[100.0]:.4f}")
    assert offsets[0.0] > 0.015 and offsets[100.0] < 0.3 * offsets[0.0], offsets
    assert "train/res_mean_sq_epoch" in trainer.callback_metrics


def test_recorded_history_commands_correct_only_the_command_the_hand_has_yet_to_receive():
    """A hand whose next state also depends on its previous command (q_{t+1} = q_t + 0.7 (a_t - q_t) + 0.3 (a_{t-1}
    - q_{t-1})).  Deployed from states the recorded commands produced, a residual can change only a_t.  With
    ``history_commands="corrected"`` training also shifts a_{t-1}, which the hand never received, and the learned
    a_res misses from those states; with ``"recorded"`` it lands there (the exact answer exists: the net reads both
    steps)."""
    from dexndm.models.residual import training_window

    class PastDependent(GapDynamics):
        def forward(self, q_hist, a_hist):
            return super().forward(q_hist, a_hist) + 0.3 * (a_hist[:, -2] - q_hist[:, -2])

    train = sim_windows(128, 20, 0, training_window(W, 2))
    misses = {}
    for mode in ("corrected", "recorded"):
        L.seed_everything(0, verbose=False)
        model = ResidualModule(dynamics=PastDependent(), res_weight=0.0, max_residual=0.5, lr=3e-3, hidden=64,
                               depth=2, history=2, history_commands=mode)
        model.res.set_stats(dynamics_stats(train["q_hist"], train["a_hist"]))
        _fit(model, train, epochs=12)
        with torch.no_grad():
            q_hist, a_hist, a_res = model.residual(train)
            sent = torch.cat((a_hist[:, :-1], a_hist[:, -1:] + a_res[:, -1:]), 1)     # only a_t changes
            misses[mode] = float((model.dynamics(q_hist, sent) - train["q_next"]).abs().mean())
            gap = float((model.dynamics(q_hist, a_hist) - train["q_next"]).abs().mean())
    print(f"one-step miss from recorded states: uncorrected {gap:.4f}, {misses}")
    assert misses["recorded"] < 0.2 * gap and misses["recorded"] < 0.5 * misses["corrected"], (gap, misses)
    with pytest.raises(ValueError, match="history_commands"):
        ResidualModule(dynamics=GapDynamics(), history_commands="sent")


def test_recorded_commands_over_a_horizon_reach_a_hand_with_latency():
    """A hand that answers a command one step late (q_{t+1} = q_t + 0.7 (a_{t-1} - q_t)), tracking a reference
    hand with the same delay and full gain.  From recorded states, a_t moves nothing within one step: the one-step
    objective has nothing to learn and the residual stays at zero.  Over two steps a_t does land, and the residual
    cuts the tracking error."""
    from dexndm.models.residual import training_window

    class Delayed(GapDynamics):
        window = W

        def forward(self, q_hist, a_hist):
            return q_hist[:, -1] + self.gain * (a_hist[:, -2] - q_hist[:, -1])

    res_abs, cut = {}, {}
    for horizon in (1, 2):
        train = sim_windows(128, 20, 0, training_window(W, 2, horizon))
        L.seed_everything(0, verbose=False)
        model = ResidualModule(dynamics=Delayed(), reference=Delayed(1.0), res_weight=0.0, max_residual=0.5, lr=3e-3,
                               hidden=64, depth=2, history=2, horizon=horizon, history_commands="recorded")
        model.res.set_stats(dynamics_stats(train["q_hist"], train["a_hist"]))
        _fit(model, train, epochs=8)
        with torch.no_grad():
            res_abs[horizon] = float(model.residual(train)[2].abs().mean())
            if horizon > 1:
                track, a_res = model.rollout_track(train)
                assert a_res.shape[1] == horizon                    # only a_t and the commands after it
                cut[horizon] = float(track) / float(model.rollout_track(train, with_residual=False)[0])
    print(f"|a_res| by horizon {res_abs}; two-step tracking error with / without the residual {cut}")
    assert res_abs[1] == 0.0 and res_abs[2] > 0.02 and cut[2] < 0.8, (res_abs, cut)
