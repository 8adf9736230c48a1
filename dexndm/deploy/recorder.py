"""Every control tick to HDF5, in the one trajectory schema (DESIGN.md; ``dexndm.data``).

A deploy run becomes a sequence of trajectories ("segments"): a segment ends when it
reaches ``segment_ticks`` transitions, when the rotation axis changes (the schema holds
one axis per trajectory), when a bus error breaks the q/target chain, and when the run
stops.  Each segment is appended through the crash-safe ``TrajectoryWriter`` as soon as
it ends, so a run killed at any moment leaves every finished segment readable; at most
``segment_ticks`` ticks are lost.  Real-hardware recordings are what the dynamics
model is fine-tuned on (DexNDM Sec. 3.4), so they use exactly the sim files' layout.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from dexndm.data.writer import TrajectoryWriter


class SegmentRecorder:
    """Collect ticks into segments and append each finished one to ``writer`` (None: count only)."""

    def __init__(self, writer: TrajectoryWriter | None, segment_ticks: int = 200, with_object: bool = False) -> None:
        if segment_ticks < 1:
            raise ValueError(f"record.segment_ticks must be >= 1, got {segment_ticks}")
        self.writer = writer
        self.segment_ticks = int(segment_ticks)
        self.with_object = with_object
        self.segments_written = 0
        self.ticks_written = 0
        self._open = False

    def begin(self, q0: np.ndarray, initial_target: np.ndarray, axis: np.ndarray, gravity_dir: np.ndarray,
              object_pose: np.ndarray | None = None) -> None:
        """Start a segment at measured ``q0`` [16], with ``initial_target`` [16] held before it."""
        self.q = [np.asarray(q0, np.float32)]
        self.target: list[np.ndarray] = []
        self.action: list[np.ndarray] = []
        self.pose = [object_pose] if self.with_object and object_pose is not None else None
        self.initial_target = np.asarray(initial_target, np.float32)
        self.axis = np.asarray(axis, np.float32)
        self.gravity_dir = np.asarray(gravity_dir, np.float32)
        self._open = True

    @property
    def open(self) -> bool:
        return self._open

    def add(self, sent: np.ndarray, action: np.ndarray, q_next: np.ndarray, object_pose: np.ndarray | None = None,
            params: Mapping[str, Any] | None = None) -> None:
        """One transition: the command actually sent [16], the policy's relative action [16] and the
        next measured q [16]; a full segment is written and the next begins where it ended."""
        self.target.append(np.asarray(sent, np.float32))
        self.action.append(np.clip(np.nan_to_num(np.asarray(action, np.float32)), -1.0, 1.0))
        self.q.append(np.asarray(q_next, np.float32))
        if self.pose is not None and object_pose is not None:
            self.pose.append(object_pose)
        if len(self.target) >= self.segment_ticks:
            last_q, last_target, pose = self.q[-1], self.target[-1], (self.pose[-1] if self.pose else None)
            self.end(True, params)
            self.begin(last_q, last_target, self.axis, self.gravity_dir, pose)

    def end(self, success: bool, params: Mapping[str, Any] | None = None) -> None:
        """Close the open segment (dropped if it holds no transition) and append it."""
        if not self._open:
            return
        self._open = False
        T = len(self.target)
        if T == 0 or self.writer is None:
            self.ticks_written += T
            return
        traj = {"q": np.stack(self.q), "target": np.stack(self.target), "initial_target": self.initial_target,
                "axis": self.axis, "gravity_dir": self.gravity_dir, "action": np.stack(self.action),
                "length": T, "success": bool(success), "params": dict(params or {})}
        if self.pose is not None and len(self.pose) == T + 1:
            traj["object_pose"] = np.stack(self.pose).astype(np.float32)
        self.writer.append(traj)
        self.segments_written += 1
        self.ticks_written += T


def open_writer(path: str | os.PathLike, *, domain: Mapping[str, Any], source: Mapping[str, Any],
                config: Mapping[str, Any]) -> TrajectoryWriter:
    """A new recording file (never overwrites an existing one: choose another ``record.path``)."""
    return TrajectoryWriter(path, domain=domain, source=source, config=config, resume=False)
