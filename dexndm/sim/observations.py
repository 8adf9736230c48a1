"""Observation layouts, defined once and saved with anything trained on them.

Two observations (DexNDM Sec. 3.1-3.2, Appendix A.1):

* privileged (oracle): joint and target histories, joint velocities, fingertip states,
  object state, goal pose, joint and fingertip forces, per-body contact forces and
  binary contacts, wrist orientation, rotation axis;
* deployable (generalist, real hand): a T=10 history of (q_k, a_{k-1}), wrist
  orientation, rotation axis.

A layout is an ordered list of named fields; ``ObsLayout.to_dict``/``from_dict`` round
trip it through checkpoint metadata, and ``check_compatible`` refuses a mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dexndm.hand import constants as hc

LAYOUT_VERSION = 1


@dataclass(frozen=True)
class ObsLayout:
    """Named fields of a flat observation vector, in order: ((name, width), ...)."""

    name: str
    fields: tuple[tuple[str, int], ...]
    version: int = LAYOUT_VERSION

    @property
    def dim(self) -> int:
        return sum(w for _, w in self.fields)

    def slice(self, field: str) -> slice:
        start = 0
        for name, width in self.fields:
            if name == field:
                return slice(start, start + width)
            start += width
        raise KeyError(f"layout {self.name!r} has no field {field!r}; fields: {[n for n, _ in self.fields]}")

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "fields": [[n, w] for n, w in self.fields],
                "joint_order": list(hc.JOINT_NAMES)}

    @classmethod
    def from_dict(cls, data: dict) -> "ObsLayout":
        try:
            fields = tuple((str(n), int(w)) for n, w in data["fields"])
            layout = cls(str(data["name"]), fields, int(data["version"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed observation layout {data!r}: {exc}") from exc
        if list(data.get("joint_order", hc.JOINT_NAMES)) != list(hc.JOINT_NAMES):
            raise ValueError("observation layout was saved with another joint order "
                             f"{data.get('joint_order')}; dexndm uses {list(hc.JOINT_NAMES)}")
        return layout

    def check_compatible(self, other: "ObsLayout") -> None:
        if self != other:
            raise ValueError(f"observation layout mismatch: this code builds {self.to_dict()}, "
                             f"the checkpoint/dataset expects {other.to_dict()}")


J = hc.NUM_JOINTS
PRIVILEGED_HISTORY = 3
DEPLOY_HISTORY = 10


def privileged_layout(history: int = PRIVILEGED_HISTORY, object_displacement: bool = False,
                      pose_center: bool = False, grasp_pose: bool = False) -> ObsLayout:
    """Oracle observation (paper A.1 list; contact part sized for this model's bodies).

    ``object_displacement`` (ours) appends the object's position minus its position at reset:
    the drop test and the position penalty are measured from there, and grasps start in
    different places (cuboids, palm up: 2.3 cm from their mean on average), so without it the
    policy cannot tell how close the object is to ending the episode.  ``pose_center`` (ours,
    with pose actions) appends the episode's first targets, the centre the action's pose is
    taken around: they differ between grasps (0.15 rad std per joint over the cuboid grasps).
    ``grasp_pose`` (ours) appends the joint positions at reset: the reward's pose term
    |q - q_init|^2 is measured from them, which the policy cannot otherwise tell."""
    return ObsLayout("privileged", (
        ("joint_pos_history", history * J),      # [history, 16], oldest first
        ("target_history", history * J),         # [history, 16]
        ("joint_vel", J),
        ("fingertip_state", 4 * 13),             # per tip: pos 3, quat 4, linvel 3, angvel 3
        ("object_state", 13),                    # pos (relative to grasp centre) 3, quat 4, linvel 3, angvel 3
        ("goal_quat", 4),
        ("joint_torque", J),                     # actuator torques
        ("fingertip_wrench", 4 * 6),             # force 3 + torque 3 per distal link
        ("contact_force", 3 * len(hc.CONTACT_BODIES)),
        ("contact_binary", len(hc.CONTACT_BODIES)),
        ("wrist_quat", 4),
        ("rotation_axis", 3),
    ) + ((("object_displacement", 3),) if object_displacement else ())
      + ((("pose_center", J),) if pose_center else ())
      + ((("grasp_joint_pos", J),) if grasp_pose else ()))


def privileged_layout_of(cfg) -> ObsLayout:
    """The privileged layout an ``EnvConfig`` builds."""
    return privileged_layout(cfg.privileged_history, cfg.privileged_displacement, cfg.pose_action_range is not None,
                             cfg.privileged_grasp_pose)


def privileged_options(layout: ObsLayout) -> dict[str, int | bool]:
    """The ``privileged_layout`` arguments (as ``EnvConfig`` fields) that rebuild ``layout``
    (a ``pose_center`` field comes with ``env.pose_action_range``, whose value the layout lacks)."""
    fields = dict(layout.fields)
    return {"privileged_history": fields.get("joint_pos_history", 0) // J,
            "privileged_displacement": "object_displacement" in fields,
            "privileged_grasp_pose": "grasp_joint_pos" in fields}


def deploy_layout(history: int = DEPLOY_HISTORY) -> ObsLayout:
    """Generalist observation: history of (q_k, a_{k-1}) then wrist orientation and axis."""
    return ObsLayout("deploy", (
        ("proprio_history", history * 2 * J),    # [history, 2, 16]: (q_k, a_{k-1}), oldest first
        ("wrist_quat", 4),
        ("rotation_axis", 3),
    ))


class DeployObservation:
    """The deployable observation of N hands: a rolling (q_k, a_{k-1}) history plus wrist
    orientation and axis, written into one float32 buffer [N, layout.dim].

    Shared by every environment and by deployment, so the layout is built in one place.
    """

    def __init__(self, n: int, history: int = DEPLOY_HISTORY):
        self.layout = deploy_layout(history)
        self.history = np.zeros((n, history, 2, J))   # [N, T, (q, a), 16], oldest first
        self.buffer = np.zeros((n, self.layout.dim), dtype=np.float32)

    def reset(self, ids: np.ndarray, q: np.ndarray, target: np.ndarray) -> None:
        """Fill the history of envs ``ids`` with a still hand: q [R, 16], target [R, 16]."""
        self.history[ids, :, 0] = q[:, None]
        self.history[ids, :, 1] = target[:, None]

    def push(self, q: np.ndarray, target: np.ndarray) -> None:
        """Append (q_k, a_{k-1}) for every env: the measured joints and the target that led there."""
        self.history[:, :-1] = self.history[:, 1:]
        self.history[:, -1, 0] = q
        self.history[:, -1, 1] = target

    def build(self, wrist_quat: np.ndarray, axis: np.ndarray) -> np.ndarray:
        """The observation [N, dim] (float32, NaN-free); a view of the shared buffer."""
        n = len(self.buffer)
        self.buffer[:, self.layout.slice("proprio_history")] = self.history.reshape(n, -1)
        self.buffer[:, self.layout.slice("wrist_quat")] = wrist_quat
        self.buffer[:, self.layout.slice("rotation_axis")] = axis
        np.nan_to_num(self.buffer, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return self.buffer
