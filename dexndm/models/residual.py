"""Residual policy that bridges the dynamics gap (DexNDM Sec. 3.3, "Bridging the Dynamics
Gap via a Residual Policy").

The base policy's commanded targets a_j are corrected by a_res = pi_res(o_j, a_j) so that
the TARGET domain (the real hand, modelled by a frozen neural dynamics f_psi) tracks the
trajectory the base policy produced in SIM.  Trained supervised on sim dynamics windows
{q_hist [B, W, 16], a_hist [B, W, 16], q_next [B, 16]}:

    L = || q_{t+1} - f_psi({q_j, a_j + pi_res(o_j, a_j)}_{j=t-W+1..t}) ||^2
        + res_weight * mean ||a_res||^2

with q_{t+1} from the sim trajectory.  The loss is taken in f_psi's normalised target
space (``normalized_target``/``predict_normalized``) when f_psi is a ``DynamicsModel``,
else in radians.  ``ResidualNet`` sees, per step j, the last ``history`` steps of (q, a)
ending at (q_j, a_j), standardised with the dynamics stats: the paper's pi_res reads the
generalist's proprioceptive history o_j, and a correction that depends on how a joint is
moving (damping, lag) cannot be made from (q_j, a_j) alone.  Training windows therefore hold
W + history - 1 steps (``training_window``); optionally an extra observation ``o_j`` of
``obs_dim`` (batch key ``obs`` [B, W, obs_dim]).  All W steps run in one batched call; the
output is ``max_residual * tanh(.)`` radians.  At deployment the command is a + a_res
(``ResidualNet.correct``).  Gradients flow through f_psi but its parameters are frozen
(``requires_grad=False``, always eval mode) and not in the optimiser.

``horizon`` H > 1 replaces the one-step objective by a multi-step one (our extension, not the
paper's): from a window of sim states the frozen f_psi rolls the target hand forward H steps
under a + a_res, feeding its own predictions back into both its history and pi_res's input, and
the loss is the mean over the H steps of the distance to the sim trajectory.  A gap that moves
each step by less than f_psi's one-step error (lag, backlash, a weak hand under load) still
accumulates into a tracking error over several steps, and pi_res then sees the drifted states
the target hand reaches at deployment instead of the sim's.  Windows grow by H - 1 steps.

``reference_ckpt`` (our extension) replaces the sim's q_{t+1} as the target by a SOURCE-domain model
f_src's prediction under the base command, f_src({q_j, a_j}) (rolled out over the horizon when H > 1):
f_src is the same pre-trained model fine-tuned the same way on source-domain data.  Whatever error the
two models share (on the sim rollouts a fine-tuned model is biased by a few mrad per step, which a
bounded residual would otherwise spend itself cancelling with constant offsets) then drops out, and
only what the models say differs between the domains drives pi_res.

``mean_weight`` (our extension) penalises the per-joint mean of a_res over the batch,
mean_weight * mean_j (E_batch[a_res_j])^2: a residual through a biased model otherwise learns
near-constant per-joint command offsets that cancel the bias
(``experiments/pipeline_cylinders_tip/residual_diagnosis.md``); with this term it can only
correct what changes from state to state.

``history_commands`` says what the target hand was sent before step t.  ``"corrected"`` (the paper's): every step
of the window gets its own a_res, since a target hand that tracked the sim trajectory was sent corrected commands
all along.  ``"recorded"`` (our extension): the window's past commands stay as recorded and only the current one,
a_t, is corrected (with H > 1: a_t and the H - 1 commands after it): for windows whose states the recorded commands
produced (target-domain rollouts of the policy, ``reference_ckpt`` giving what the sim would do from them), where
correcting past commands the hand never received lets pi_res steer f_psi through a history that cannot occur.
A hand with latency answers a_t only after it, so there H must exceed the delay in steps.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dexndm.hand.constants import JOINT_NAMES, NUM_JOINTS
from dexndm.models.checkpoints import read_checkpoint
from dexndm.models.dynamics import DynamicsModel, rollout
from dexndm.models.lit_dynamics import load_dynamics
from dexndm.sim.control import CONTROL_RATE_HZ

CKPT_FORMAT = "dexndm.residual.v1"
#: What the window's past commands are in the tracking loss (see the module docstring).
HISTORY_COMMANDS = ("corrected", "recorded")
_PREFIX = "res."
J = NUM_JOINTS


class ResidualNet(nn.Module):
    """pi_res: (q_j, a_j[, the ``history - 1`` steps before][, o_j]) -> a_res ``[..., 16]`` in
    [-max_residual, max_residual]."""

    def __init__(self, hidden: int = 256, depth: int = 2, max_residual: float = 0.2, obs_dim: int = 0,
                 history: int = 1):
        super().__init__()
        if hidden < 1 or depth < 1 or max_residual <= 0 or obs_dim < 0 or history < 1:
            raise ValueError(f"need hidden, depth, history >= 1, max_residual > 0, obs_dim >= 0; "
                             f"got {hidden}, {depth}, {history}, {max_residual}, {obs_dim}")
        self.hidden, self.depth, self.max_residual, self.obs_dim = int(hidden), int(depth), float(max_residual), int(obs_dim)
        self.history = int(history)
        for key, default in (("q_mean", 0.0), ("q_std", 1.0), ("a_mean", 0.0), ("a_std", 1.0)):
            self.register_buffer(key, torch.full((J,), default))
        layers, d = [], 2 * J * self.history + self.obs_dim
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.ELU()]
            d = hidden
        last = nn.Linear(d, J)
        nn.init.zeros_(last.weight)          # starts as the identity correction (a_res = 0)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(*layers, last)

    def config(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "depth": self.depth, "max_residual": self.max_residual, "obs_dim": self.obs_dim,
                "history": self.history}

    @torch.no_grad()
    def set_stats(self, stats: Mapping[str, Any]) -> None:
        for key in ("q_mean", "q_std", "a_mean", "a_std"):
            v = torch.as_tensor(np.asarray(stats[key]), dtype=torch.float32).expand(J).clone()
            getattr(self, key).copy_(v.clamp_min(1e-6) if key.endswith("std") else v)

    def forward(self, q: torch.Tensor, a: torch.Tensor, obs: torch.Tensor | None = None,
                past: torch.Tensor | None = None) -> torch.Tensor:
        """a_res for any leading shape: ``q, a [..., 16]``; with ``history > 1`` also ``past
        [..., history - 1, 2, 16]``, the (q, a) of the steps before, oldest first (+ ``obs [..., obs_dim]``)."""
        x = [(q - self.q_mean) / self.q_std, (a - self.a_mean) / self.a_std]
        if self.history > 1:
            if past is None or past.shape[-3] != self.history - 1:
                raise ValueError(f"this residual net reads {self.history} steps: give past [..., {self.history - 1}, 2, 16]")
            pq = (past[..., 0, :] - self.q_mean) / self.q_std
            pa = (past[..., 1, :] - self.a_mean) / self.a_std
            x.append(torch.cat([pq, pa], dim=-1).flatten(-2))
        if self.obs_dim:
            if obs is None or obs.shape[-1] != self.obs_dim:
                raise ValueError(f"this residual net needs obs [..., {self.obs_dim}]")
            x.append(obs)
        return self.max_residual * torch.tanh(self.mlp(torch.cat(x, dim=-1)))

    @torch.no_grad()
    def correct(self, q: torch.Tensor, a: torch.Tensor, obs: torch.Tensor | None = None,
                past: torch.Tensor | None = None) -> torch.Tensor:
        """Deployment command a + a_res."""
        return a + self(q, a, obs, past)


def training_window(dynamics_window: int, history: int, horizon: int = 1) -> int:
    """Steps a training window needs: the dynamics model's W steps, each with its residual history,
    then ``horizon - 1`` more steps to roll through (the last step's successor is ``q_next``)."""
    return int(dynamics_window) + int(history) - 1 + int(horizon) - 1


def split_history(q_seq: torch.Tensor, a_seq: torch.Tensor, history: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``[B, W + history - 1, 16]`` sequences -> (q, a ``[B, W, 16]``, past ``[B, W, history - 1, 2, 16]`` or None):
    for each of the last W steps its own (q, a) and the ``history - 1`` steps before it."""
    if history == 1:
        return q_seq, a_seq, None
    W = q_seq.shape[1] - history + 1
    if W < 1:
        raise ValueError(f"windows of {q_seq.shape[1]} steps are too short for a residual history of {history}")
    qw = q_seq.unfold(1, history, 1).transpose(-1, -2)       # [B, W, history, 16], oldest first
    aw = a_seq.unfold(1, history, 1).transpose(-1, -2)
    past = torch.stack([qw[:, :, :-1], aw[:, :, :-1]], dim=3)
    return qw[:, :, -1], aw[:, :, -1], past


class ResidualModule(L.LightningModule):
    """Train ``ResidualNet`` through a frozen dynamics model (``dynamics_ckpt`` or a ``dynamics`` module)."""

    def __init__(self, dynamics_ckpt: str | None = None, res_weight: float = 1e-2, max_residual: float = 0.2,
                 lr: float = 1e-3, hidden: int = 256, depth: int = 2, obs_dim: int = 0, history: int = 1,
                 horizon: int = 1, dynamics: nn.Module | None = None, reference_ckpt: str | None = None,
                 reference: nn.Module | None = None, mean_weight: float = 0.0,
                 history_commands: str = "corrected"):
        super().__init__()
        if history_commands not in HISTORY_COMMANDS:
            raise ValueError(f"history_commands must be one of {HISTORY_COMMANDS}, got {history_commands!r}")
        reference_ckpt = None if reference_ckpt is None else str(reference_ckpt)
        if int(horizon) < 1:
            raise ValueError(f"horizon (steps rolled through the dynamics model) must be >= 1, got {horizon}")
        dynamics_ckpt = None if dynamics_ckpt is None else str(dynamics_ckpt)
        self.save_hyperparameters(ignore=["dynamics", "reference"])
        if (dynamics is None) == (dynamics_ckpt is None):
            raise ValueError("give exactly one of dynamics_ckpt= (a DynamicsModule .ckpt) or dynamics= (an nn.Module "
                             "with forward(q_hist, a_hist) -> q_next)")
        self.dyn_meta: dict[str, Any] = {}
        if dynamics is None:
            dynamics, self.dyn_meta = load_dynamics(dynamics_ckpt)
        dynamics.requires_grad_(False)
        self.dynamics = dynamics.eval()
        if reference is not None and reference_ckpt is not None:
            raise ValueError("give at most one of reference_ckpt= and reference=")
        if reference_ckpt is not None:
            reference = load_dynamics(reference_ckpt)[0]
        if reference is not None:
            reference.requires_grad_(False)
            reference.eval()
        self.reference = reference
        self.res = ResidualNet(hidden, depth, max_residual, obs_dim, history)
        if all(hasattr(dynamics, k) for k in ("q_mean", "q_std", "a_mean", "a_std")):
            self.res.set_stats({k: getattr(dynamics, k) for k in ("q_mean", "q_std", "a_mean", "a_std")})

    def train(self, mode: bool = True) -> "ResidualModule":
        super().train(mode)
        self.dynamics.eval()                 # frozen models: never in training mode
        if self.reference is not None:
            self.reference.eval()
        return self

    @torch.no_grad()
    def reference_targets(self, q_seq: torch.Tensor, a_seq: torch.Tensor, horizon: int) -> torch.Tensor:
        """What the source-domain model predicts the last ``horizon`` steps of the window lead to under the base
        commands, from the window's sim states before them: ``[B, horizon, 16]`` (q_{c+1} for each step c)."""
        W = self.reference.window
        c0 = q_seq.shape[1] - horizon                 # the first step predicted from
        if c0 + 1 < W:
            raise ValueError(f"the reference model reads {W} steps but the windows hold {c0 + 1} before the "
                             f"horizon; use a reference with the dynamics model's window")
        return rollout(self.reference, q_seq[:, c0 - W + 1:c0 + 1], a_seq[:, c0 - W + 1:c0], a_seq[:, c0:])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.res.parameters(), lr=self.hparams.lr)

    def _check_window(self, batch: Mapping[str, torch.Tensor]) -> None:
        window = getattr(self.dynamics, "window", None)
        steps = batch["q_hist"].shape[1]
        if window is not None and steps != training_window(window, self.res.history, self.hparams.horizon):
            raise ValueError(f"the dynamics model reads {window} steps, the residual {self.res.history} and the "
                             f"horizon is {self.hparams.horizon}: set data.window="
                             f"{training_window(window, self.res.history, self.hparams.horizon)} (got {steps})")

    def residual(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(q_hist, a_hist ``[B, W, 16]`` as the dynamics model reads them, a_res for each of their steps
        ``[B, W, 16]``) from a window of W + history - 1 steps (one batched call)."""
        self._check_window(batch)
        q_hist, a_hist, past = split_history(batch["q_hist"], batch["a_hist"], self.res.history)
        obs = batch["obs"][:, -q_hist.shape[1]:] if self.hparams.obs_dim else None
        return q_hist, a_hist, self.res(q_hist, a_hist, obs, past)

    def rollout_track(self, batch: Mapping[str, torch.Tensor], with_residual: bool = True
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Multi-step objective: (mean tracking loss over the horizon, a_res of every step ``[B, W + H - 1, 16]``).

        Window steps 0..N-1 (N = P + W + H - 1, P = history - 1); step c0 = P + W - 1 is the first
        predicted from.  Steps up to c0 keep the sim's q; from c0 + 1 on, q is f_psi's prediction under
        the corrected commands, and pi_res at step c reads the (q, a) of steps c - P..c.  The target at
        step c is the sim's q_{c+1} (``q_hist`` shifted by one, then ``q_next``)."""
        self._check_window(batch)
        P, H = self.res.history - 1, int(self.hparams.horizon)
        q_sim = torch.cat((batch["q_hist"], batch["q_next"].unsqueeze(1)), dim=1)       # [B, N + 1, 16]
        if self.reference is not None:       # the steps to track: the source model's, not the sim's
            q_sim = torch.cat((q_sim[:, :-H], self.reference_targets(q_sim[:, :-1], batch["a_hist"], H)), dim=1)
        a = batch["a_hist"]
        N = a.shape[1]
        c0 = N - H
        W = c0 - P + 1
        if W < 1:
            raise ValueError(f"windows of {N} steps are too short for a residual history of {P + 1} and a "
                             f"horizon of {H}")
        obs = batch["obs"] if self.hparams.obs_dim else None

        def res_of(q_w: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
            """a_res of steps lo..hi-1 from the states ``q_w`` of steps lo-P..hi-1 and the base actions."""
            if not with_residual:
                return q_w.new_zeros(q_w.shape[0], hi - lo, J)
            q, a_w, past = split_history(q_w, a[:, lo - P:hi], P + 1)
            return self.res(q, a_w, None if obs is None else obs[:, lo:hi], past)

        qs = list(q_sim[:, :c0 + 1].unbind(1))              # the target hand's states: sim's, then predicted
        if self.hparams.history_commands == "recorded":     # steps before c0 keep their recorded commands
            a_res = [q_sim.new_zeros(len(a), J)] * (c0 - P) + [res_of(q_sim[:, c0 - P:c0 + 1], c0, c0 + 1)[:, 0]]
        else:
            a_res = list(res_of(q_sim[:, :c0 + 1], P, c0 + 1).unbind(1))      # a_res[i] belongs to step P + i
        losses = []
        for c in range(c0, N):
            if c > c0:
                a_res.append(res_of(torch.stack(qs[c - P:c + 1], 1), c, c + 1)[:, 0])
            q_hist = torch.stack(qs[c - W + 1:c + 1], 1)
            cmd = a[:, c - W + 1:c + 1] + torch.stack(a_res[c - W + 1 - P:c + 1 - P], 1)
            loss, q_pred = self._track(q_hist, cmd, q_sim[:, c + 1], with_prediction=True)
            losses.append(loss)
            qs.append(q_pred)
        corrected = a_res[c0 - P:] if self.hparams.history_commands == "recorded" else a_res
        return torch.stack(losses).mean(), torch.stack(corrected, 1)

    def _track(self, q_hist: torch.Tensor, a_cmd: torch.Tensor, q_next: torch.Tensor, with_prediction: bool = False
               ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """How far the model's next state under ``a_cmd`` is from the sim's ``q_next`` (MSE); with
        ``with_prediction`` also that next state ``[B, 16]`` (rad)."""
        if isinstance(self.dynamics, DynamicsModel):
            out = self.dynamics.predict_normalized(q_hist, a_cmd)
            loss = F.mse_loss(out, self.dynamics.normalized_target(q_hist[:, -1], q_next))
            return (loss, self.dynamics.denormalize(q_hist[:, -1], out)) if with_prediction else loss
        pred = self.dynamics(q_hist, a_cmd)
        loss = F.mse_loss(pred, q_next)
        return (loss, pred) if with_prediction else loss

    def losses(self, batch: Mapping[str, torch.Tensor], diagnostics: bool = False) -> dict[str, torch.Tensor]:
        """``track`` and the residual's size; with ``diagnostics`` also ``track_zero``, the tracking
        error the model predicts without a residual (what the residual is there to cut), and
        ``res_abs``, the mean |a_res| (rad: a is the joint target)."""
        if self.hparams.horizon > 1:
            track, a_res = self.rollout_track(batch)
        else:
            q_hist, a_hist, a_res = self.residual(batch)
            q_next = batch["q_next"] if self.reference is None else self.reference_targets(
                batch["q_hist"], batch["a_hist"], 1)[:, 0]
            if self.hparams.history_commands == "recorded":       # only a_t corrected; its a_res alone counts
                a_res = a_res[:, -1:]
                track = self._track(q_hist, torch.cat((a_hist[:, :-1], a_hist[:, -1:] + a_res), 1), q_next)
            else:
                track = self._track(q_hist, a_hist + a_res, q_next)
        size = a_res.pow(2).mean()
        offset = a_res.flatten(0, -2).mean(0).pow(2).mean()          # the constant part, per joint
        out = {"loss": track + self.hparams.res_weight * size + self.hparams.mean_weight * offset, "track": track,
               "res_sq": size, "res_mean_sq": offset}
        if diagnostics:
            with torch.no_grad():
                out["track_zero"] = (self.rollout_track(batch, with_residual=False)[0] if self.hparams.horizon > 1
                                     else self._track(q_hist, a_hist, q_next))
                out["res_abs"] = a_res.abs().mean()
        return out

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.losses(batch)
        self.log_dict({f"train/{k}": v for k, v in out.items()}, on_step=True, on_epoch=True,
                      batch_size=len(batch["q_next"]))
        return out["loss"]

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        out = self.losses(batch, diagnostics=True)
        self.log_dict({f"val/{k}": v for k, v in out.items()}, on_epoch=True, batch_size=len(batch["q_next"]),
                      sync_dist=True, add_dataloader_idx=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dexndm_meta"] = {
            "format": CKPT_FORMAT, "joint_order": list(JOINT_NAMES), "control_rate_hz": CONTROL_RATE_HZ,
            "config": self.res.config(), "res_weight": float(self.hparams.res_weight),
            "horizon": int(self.hparams.horizon), "history_commands": self.hparams.history_commands,
            "dynamics_ckpt": self.hparams.dynamics_ckpt, "reference_ckpt": self.hparams.reference_ckpt,
            "dynamics_config": dict(self.dyn_meta.get("config", {})),
        }


def load_residual(path: str | os.PathLike) -> tuple[ResidualNet, dict[str, Any]]:
    """(plain ``ResidualNet`` in eval mode, meta) from a ResidualModule ``.ckpt`` (``weights_only=True``)."""
    state, meta = read_checkpoint(path, CKPT_FORMAT, "residual", "ResidualModule", _PREFIX)
    net = ResidualNet(**meta["config"])
    net.load_state_dict(state)
    return net.eval(), meta
