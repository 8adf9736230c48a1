"""In-hand rotation reward (DexNDM Appendix A.1, following RotateIt), vectorised over envs.

    r = a_rot r_rot + a_goal r_goal + a_penalty r_penalty + a_tip r_tip + r_alive  (- drop_penalty on a drop)
    r_rot     = clip(w . k, -c, c) * gate(|p - p_0|)                 c = 0.5 (-c: see clip_backward)
    r_penalty = - a_rot |w x k|_1 - a_lin |v|^2 - a_pose |q - q_init|^2
                - a_work |tau . qdot| - a_torque |tau|^2 - a_pos |p - p_0| - a_drift |ema(a) - a_0|^2
    r_goal    = clip(g_goal / (ang_diff(p, p_goal) + eps), 0, c_goal)
                + g_bonus [ang_diff(p, p_goal) < c_threshold]
    r_tip     = fraction of the fingertips on the object (0..1)

The paper names both the rotation weight and the off-axis coefficient ``a_rot`` and
schedules "a_rot" over resets (0 for the first 10, linear to 0.1 at 100, then 0.1).
``schedule_targets`` says which of the two follow that schedule (default: both, the
literal reading); the other keeps its fixed value.  The work term is the paper's
tau^T qdot taken in magnitude (mechanical power), so negative work earns no reward.
The paper does not give g_goal, c_goal, eps, g_bonus or c_threshold; the defaults
below are ours and configurable, chosen so that holding still nets about zero with
the paper's penalty weights (the guidance term pays ~0.3/step with the waypoint 90
degrees away against ~0.3/step of grip torque and work) and progress towards the
waypoint pays clearly more; with a net-negative hold, dropping the object early
would be the best policy.

That balance holds for a still hand, not for an exploring one: with fingertip grasps
and PPO's initial action noise (std 1) the penalties cost ~0.75 per step and PPO
learned within 0.5M frames to drop the object at once (TTF 0.07: an early drop ends
the penalties).  ``alive_bonus`` (per step the object is held) and ``drop_penalty``
(on the step it falls) are ours, not the paper's; they keep holding worth more than
dropping while the policy still explores.

``position`` (a_pos, ours, default 0) weighs the object's distance from where the
episode started (metres).  The drop test only fires once the object is 5 cm away, so
without it a policy that flings the object out in its first steps learns only from the
one-off drop penalty; measured on a rotation-only oracle (cuboids, palm up), 31 of 48
deterministic episodes ended that way within ~30 steps, all sideways.  The dense term
gives the credit at every step on the way out.  ``rot_gate_distance`` (d_g, ours, default
off) scales the rotation term by ``gate = clip(1 - |p - p_0| / d_g, 0, 1)``: rotation
earns only while the object stays where it was grasped, so the twist that comes from
curling the fingers and pulling the object towards the wrist (-x, 4-6 cm within 8-20
steps in those episodes) stops paying as it happens.

``rot_gate_pose`` (g_p, ours, default off) scales the rotation term by
``clip(1 - |q - q_init|^2 / g_p^2, 0, 1)`` (the squared distance summed over joints, rad^2): rotation
earns only while the hand stays near its grasp pose (turning back is charged in full wherever the hand
is, so going out, turning back and returning does not pay).  Every oracle trained without it turned the object
once by sweeping its fingers to their limits and then held it (rotation by quarter 0.58 / 0.12 / 0.05 /
0.03 rad/s, 18% of the targets at a limit); a pose penalty trades against that sweep, the gate removes
its pay, so the way to keep earning is to bring the fingers back and turn again (a gait).  With the
one-sided clip, shaking about the grasp pose does not pay either.

``pose_tolerance`` (ours, default 0) leaves each joint free within that many radians of its
grasp position and penalises only what lies beyond: (max(|q - q_init| - tol, 0))^2.  Relative
actions drift to the joint limits without a pose term (index and middle abduction at their upper
limit in 63% / 86% of envs after 120 steps of a palm-rest oracle); the full quadratic term also
taxes the small finger motions a gait is made of.

``clip_backward`` (default True: the paper's clip(w . k, -c, c)).  A symmetric clip pays
for shaking: a cuboid oracle trained with pose actions (6.6M frames) shook the object about
the axis, |w . k| above 1 rad/s in 39% of its steps (90th percentile 2.65 rad/s) with the clip
at 1, and earned a mean rotation term of 0.22 while the object turned at 0.06 rad/s.  With
``clip_backward: false`` the term is min(w . k, c): turning back is paid in full, so the term
never exceeds the true rotation rate and shaking costs.

``drift`` (a_drift, ours, default 0) weighs how far the *slow* part of the joint targets has moved
from the episode's first targets: ``|ema(a) - a_0|^2`` summed over joints (rad^2), with ema an
exponential moving average of the targets a_t over ``drift_steps`` control steps (40: 2 s at 20 Hz).
A finger gait moves the targets back and forth about a pose and averages out; a drift does not.
The cuboid oracles turn fast while their targets creep towards the joint limits and stop turning
once a third of them sit there (targets' distance from a_0: 4.5, 7.5, 8.6, 9.3 rad^2 by quarter at
50M frames, rotation 0.61, 0.28, 0.08, 0.05 rad/s); the pose terms above tax every excursion of a
gait as much as the creep.  The average is not observed; it is close to the observed recent targets.

``tip_contact`` (a_tip, ours, default 0) pays per step for the fraction of fingertips
touching the object (fingertips touching each other do not count).  The rotation oracle at
9M frames (cuboids, palm up, v5 grasps, `experiments/oracle_drops.py`) keeps 1.6 of 4 tips on
the object on average while zero action keeps 2.8: it turns the object pinched between the
thumb tip and the ring finger's middle and proximal links (touching in 61% and 22% of sampled
steps; the palm 5%), and loses it within ~100 steps.  The term asks for a fingertip
grasp instead; whether that holds longer is measured in experiments/oracle_cuboids_palm_up_z.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TERMS: tuple[str, ...] = ("rot", "goal", "offaxis", "lin_vel", "pose", "work", "torque", "position", "tip_contact",
                          "drift")


@dataclass
class RewardConfig:
    rot_clip: float = 0.5            # c
    clip_backward: bool = True       # clip w . k below at -c too (paper); False: turning back is paid in full
    rot_weight: float = 0.1          # a_rot on r_rot (final value when scheduled)
    offaxis: float = 0.1             # a_rot on |w x k|_1 (final value when scheduled)
    lin_vel: float = 0.3             # a_lin
    pose: float = 0.3                # a_pose
    pose_tolerance: float = 0.0      # rad per joint the pose term ignores (0: the paper's |q - q_init|^2)
    work: float = 2.0                # a_work
    torque: float = 0.1              # a_torque
    position: float = 0.0            # a_pos, per metre the object is from its start (ours, see above)
    rot_gate_distance: float | None = None  # d_g, m: rotation pays less as the object leaves its start; None: off
    rot_gate_pose: float | None = None  # g_p, rad: rotation pays less as the joints leave their grasp pose; None: off
    tip_contact: float = 0.0         # a_tip, per step times the fraction of fingertips in contact (ours, see above)
    drift: float = 0.0               # a_drift, per rad^2 the targets' moving average is from the first targets (ours)
    drift_steps: float = 40.0        # control steps the moving average of the targets spans (its time constant)
    penalty_weight: float = 1.0      # a_penalty
    goal_weight: float = 1.0         # a_goal
    goal_gain: float = 0.5           # g_goal
    goal_clip: float = 2.0           # c_goal
    goal_eps: float = 0.1            # eps, rad
    goal_bonus: float = 5.0          # g_bonus
    goal_threshold_deg: float = 15.0  # c_threshold, and the waypoint advance threshold
    goal_ahead_deg: float = 90.0     # waypoint placed this far ahead about the axis
    alive_bonus: float = 1.0         # per step the object is still held (ours, see above)
    drop_penalty: float = 0.0        # once, on the step the object falls (ours)
    schedule_start: int = 10         # resets with the scheduled coefficients at 0
    schedule_end: int = 100          # resets at which they reach their final value
    schedule_targets: list[str] = field(default_factory=lambda: ["rot", "offaxis"])

    def __post_init__(self) -> None:
        bad = [t for t in self.schedule_targets if t not in ("rot", "offaxis")]
        if bad:
            raise ValueError(f"reward.schedule_targets: unknown entries {bad}; allowed: rot, offaxis")
        if self.rot_gate_distance is not None and not self.rot_gate_distance > 0:
            raise ValueError(f"reward.rot_gate_distance must be > 0 (metres) or null, got {self.rot_gate_distance}")
        if self.rot_gate_pose is not None and not self.rot_gate_pose > 0:
            raise ValueError(f"reward.rot_gate_pose must be > 0 (rad) or null, got {self.rot_gate_pose}")
        if not self.drift_steps >= 1:
            raise ValueError(f"reward.drift_steps must be >= 1 (control steps), got {self.drift_steps}")
        if not self.pose_tolerance >= 0:
            raise ValueError(f"reward.pose_tolerance must be >= 0 (rad), got {self.pose_tolerance}")
        if self.schedule_end < self.schedule_start:
            raise ValueError("reward.schedule_end must be >= reward.schedule_start")

    def schedule(self, resets: int) -> float:
        """Fraction (0..1) of the scheduled coefficients' final value after ``resets`` resets."""
        if resets <= self.schedule_start:
            return 0.0
        if resets >= self.schedule_end:
            return 1.0
        return (resets - self.schedule_start) / max(self.schedule_end - self.schedule_start, 1)


def reward_terms(
    cfg: RewardConfig,
    *,
    angvel: np.ndarray,     # [N, 3] object angular velocity, world (hand) frame, rad/s
    linvel: np.ndarray,     # [N, 3] object linear velocity, m/s
    axis: np.ndarray,       # [N, 3] unit target axis
    q: np.ndarray,          # [N, 16] joint positions
    q_init: np.ndarray,     # [N, 16] joint positions at reset
    torque: np.ndarray,     # [N, S, 16] actuator torques over the control step's substeps
    qdot: np.ndarray,       # [N, S, 16] joint velocities over the substeps
    goal_angle: np.ndarray,  # [N] angle (rad) between object and goal orientation
    displacement: np.ndarray,  # [N, 3] object position minus its position at reset, m
    tip_contacts: np.ndarray,  # [N, F] bool, fingertip f touches the object
    slow_offset: np.ndarray | None = None,  # [N, 16] moving average of the targets minus the first targets, rad
) -> dict[str, np.ndarray]:
    """Unweighted terms ([N] each); penalties are positive magnitudes."""
    w_dot_k = (angvel * axis).sum(-1)
    thr = np.deg2rad(cfg.goal_threshold_deg)
    distance = np.linalg.norm(displacement, axis=-1)
    gate = 1.0 if cfg.rot_gate_distance is None else np.clip(1.0 - distance / cfg.rot_gate_distance, 0.0, 1.0)
    rot = np.clip(w_dot_k, -cfg.rot_clip if cfg.clip_backward else None, cfg.rot_clip) * gate
    if cfg.rot_gate_pose is not None:  # forward turning only: turning back far from the pose costs in full
        pose_gate = np.clip(1.0 - ((q - q_init) ** 2).sum(-1) / cfg.rot_gate_pose ** 2, 0.0, 1.0)
        rot = np.where(rot > 0, rot * pose_gate, rot)
    return {
        "rot": rot,
        "goal": np.clip(cfg.goal_gain / (goal_angle + cfg.goal_eps), 0.0, cfg.goal_clip)
        + cfg.goal_bonus * (goal_angle < thr),
        "offaxis": np.abs(np.cross(angvel, axis)).sum(-1),
        "lin_vel": (linvel ** 2).sum(-1),
        "pose": (np.maximum(np.abs(q - q_init) - cfg.pose_tolerance, 0.0) ** 2).sum(-1),
        "work": np.abs((torque * qdot).sum(-1)).mean(-1),
        "torque": (torque ** 2).sum(-1).mean(-1),
        "position": distance,
        "tip_contact": np.asarray(tip_contacts, dtype=float).mean(-1),
        "drift": np.zeros(len(q)) if slow_offset is None else (slow_offset ** 2).sum(-1),
    }


def follow(average: np.ndarray, value: np.ndarray, steps: float) -> np.ndarray:
    """One step of an exponential moving average over ``steps`` steps (in place; returns it)."""
    average += (value - average) / steps
    return average


def total_reward(cfg: RewardConfig, terms: dict[str, np.ndarray], resets: int,
                 dropped: np.ndarray | None = None) -> np.ndarray:
    """Weighted sum of the terms plus the alive bonus, minus the drop penalty where ``dropped`` ([N])."""
    s = cfg.schedule(resets)
    rot_w = cfg.rot_weight * (s if "rot" in cfg.schedule_targets else 1.0)
    off_w = cfg.offaxis * (s if "offaxis" in cfg.schedule_targets else 1.0)
    penalty = (off_w * terms["offaxis"] + cfg.lin_vel * terms["lin_vel"] + cfg.pose * terms["pose"]
               + cfg.work * terms["work"] + cfg.torque * terms["torque"] + cfg.position * terms["position"]
               + cfg.drift * terms["drift"])
    reward = (rot_w * terms["rot"] + cfg.goal_weight * terms["goal"] + cfg.tip_contact * terms["tip_contact"]
              - cfg.penalty_weight * penalty)
    if dropped is None:
        return reward + cfg.alive_bonus
    return reward + np.where(dropped, -cfg.drop_penalty, cfg.alive_bonus)
