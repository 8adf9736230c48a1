"""Per-episode rotation metrics (DexNDM Sec. 4.1 and Appendix C, following RotateIt).

* ``rot_r``   RotR: episode sum of w . k (rad/s summed over control steps).
* ``ttf``     TTF: steps until termination / episode length (1.0 = never fell).
* ``rotp``    RotP: per-step average |w x k| (rad/s).
* ``rot_rad`` radians rotated about the target axis: sum of (w . k) dt.
* ``survival_angle`` total angle turned about any axis before the episode ended:
  sum of |w| dt (the paper's comparison metric with Visual Dexterity).
* ``go_success`` goal-oriented success: final orientation within the success angle
  of the goal (meaningful in goal mode).
* ``length`` control steps; ``blowup`` 1 where the episode ended in a physics blow-up.
"""

from __future__ import annotations

import numpy as np

EPISODE_METRICS: tuple[str, ...] = ("rot_r", "ttf", "rotp", "rot_rad", "survival_angle", "go_success",
                                    "length", "blowup")


class EpisodeTracker:
    """Accumulates the metrics of N running episodes."""

    def __init__(self, n: int, episode_steps: int, dt: float):
        self.episode_steps = episode_steps
        self.dt = dt
        self.steps = np.zeros(n, dtype=np.int64)
        self.w_dot_k = np.zeros(n)
        self.w_cross_k = np.zeros(n)
        self.w_norm = np.zeros(n)
        self.goal_angle = np.full(n, np.pi)

    def reset(self, ids: np.ndarray) -> None:
        self.steps[ids] = 0
        self.w_dot_k[ids] = 0.0
        self.w_cross_k[ids] = 0.0
        self.w_norm[ids] = 0.0
        self.goal_angle[ids] = np.pi

    def step(self, angvel: np.ndarray, axis: np.ndarray, terms: dict | None = None,
             goal_angle: np.ndarray | None = None) -> None:
        """Add one control step: object angular velocity [N, 3], unit axis [N, 3]."""
        self.steps += 1
        self.w_dot_k += (angvel * axis).sum(-1)
        self.w_cross_k += np.linalg.norm(np.cross(angvel, axis), axis=-1)
        self.w_norm += np.linalg.norm(angvel, axis=-1)
        if goal_angle is not None:
            self.goal_angle = goal_angle

    def finish(self, ended: np.ndarray, blowup: np.ndarray, success_angle: float) -> dict[str, np.ndarray]:
        """Metrics of every env ([N] each; only entries where ``ended`` are meaningful)."""
        steps = np.maximum(self.steps, 1)
        return {
            "rot_r": self.w_dot_k.copy(),
            "ttf": np.minimum(self.steps / self.episode_steps, 1.0),
            "rotp": self.w_cross_k / steps,
            "rot_rad": self.w_dot_k * self.dt,
            "survival_angle": self.w_norm * self.dt,
            "go_success": (self.goal_angle < success_angle).astype(float),
            "length": self.steps.astype(float),
            "blowup": blowup.astype(float),
        }


def summarize(values: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Mean and std (population) of each metric over finished episodes."""
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)} for k, v in values.items() if v}
