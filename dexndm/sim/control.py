"""The hand's command path and encoders, shared by every environment that drives it.

* Relative targets (paper Sec. 3.1): a_t = clip(a_{t-1} + scale * action, joint limits),
  action clipped to [-1, 1] and NaN treated as 0; or absolute targets for open-loop
  replay (Chaos Box, base waves).
* An optional offset (rad) on what is sent, outside the chain: the residual policy's
  a_res (paper Sec. 3.3).  The hand tracks clip(a_t + offset) while the base policy's
  chain and observation keep a_t, as at deployment.
* Latency (domain): whole control steps through a queue, plus physics steps inside the
  control step during which the previous command still acts.
* Encoders (domain + randomisation): bias, Gaussian noise, uniform noise.

Arrays are [N, 16] in hardware joint order; ``ctrl`` is [N, substeps, 16] for
``PhysicsBackend.step``.
"""

from __future__ import annotations

import numpy as np

from dexndm.hand import constants as hc
from dexndm.sim.domain import Domain

J = hc.NUM_JOINTS
#: The policy's relative action scale: a_t = a_{t-1} + ACTION_SCALE * action (paper Sec. 3.1).
ACTION_SCALE = 1.0 / 24.0
#: Control rate of every policy, dataset and deployment loop (Hz); the nominal domain's
#: 6 physics steps of 1/120 s give it.
CONTROL_RATE_HZ = 20.0


class HandController:
    def __init__(self, n: int, domain: Domain, action_scale: float = ACTION_SCALE, uniform_noise: float = 0.0):
        self.n = n
        self.domain = domain
        self.substeps = domain.substeps
        self.action_scale = action_scale
        self.uniform_noise = uniform_noise
        self.target = np.zeros((n, J))                                   # a_{t-1}: the base chain's targets
        self.sent = np.zeros((n, J))                                     # what was sent: target (+ offset)
        self.queue = np.zeros((domain.latency_control_steps + 1, n, J))  # commands not yet in effect
        self.applied = np.zeros((n, J))                                  # what the actuators track now
        self.ctrl = np.zeros((n, self.substeps, J))

    def reset(self, ids: np.ndarray, target: np.ndarray) -> None:
        """Hold ``target`` ([len(ids), 16]) with no command in flight."""
        self.target[ids] = target
        self.sent[ids] = target
        self.queue[:, ids] = target
        self.applied[ids] = target

    def relative(self, action: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
        """Apply relative actions [N, 16] (plus an optional sent-only offset [N, 16], rad);
        returns ctrl [N, substeps, 16]."""
        return self.absolute(self.chain(action), offset)

    def chain(self, action: np.ndarray) -> np.ndarray:
        """The base chain's next targets a_t = clip(a_{t-1} + scale * clip(action, -1, 1)) [N, 16] for relative
        actions [N, 16] (NaN and inf read as 0), without applying them."""
        action = np.clip(np.nan_to_num(action, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0)
        return np.clip(self.target + self.action_scale * action, hc.JOINT_LOWER, hc.JOINT_UPPER)

    def absolute(self, target: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
        """Command absolute targets [N, 16] (clamped to limits; an optional offset [N, 16] is
        added to what is sent, not to the chain); returns ctrl [N, substeps, 16]."""
        target = np.nan_to_num(target, nan=0.0)
        self.target = np.clip(target, hc.JOINT_LOWER, hc.JOINT_UPPER)
        self.sent = self.target
        if offset is not None:
            offset = np.nan_to_num(offset, nan=0.0, posinf=0.0, neginf=0.0)
            self.sent = np.clip(self.target + offset, hc.JOINT_LOWER, hc.JOINT_UPPER)
        previous = self.applied
        self.queue = np.roll(self.queue, -1, axis=0)
        self.queue[-1] = self.sent
        self.applied = self.queue[0].copy()
        p = self.domain.latency_physics_steps
        self.ctrl[:, :p] = previous[:, None]
        self.ctrl[:, p:] = self.applied[:, None]
        return self.ctrl

    def preview(self, target: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
        """The ctrl [N, substeps, 16] that ``absolute(target, offset)`` would return, leaving the controller
        as it is (for probes that try several commands from one state)."""
        saved = self.target, self.sent, self.queue, self.applied, self.ctrl
        self.ctrl = self.ctrl.copy()            # absolute writes ctrl in place; it replaces the others
        try:
            return self.absolute(target, offset)
        finally:
            self.target, self.sent, self.queue, self.applied, self.ctrl = saved

    def measure(self, q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Joint positions [K, 16] as the encoders report them."""
        out = q + self.domain.joint_bias
        if self.domain.joint_noise_std > 0:
            out = out + rng.normal(0.0, self.domain.joint_noise_std, size=q.shape)
        if self.uniform_noise > 0:
            out = out + rng.uniform(-self.uniform_noise, self.uniform_noise, size=q.shape)
        return out
