"""Target sequences to replay in the target domain (DexNDM Sec. 3.3, Appendix C).

The Chaos Box and free-hand strategies replay, open loop, the joint-target sequences of
simulated rotation policies recorded for the same wrist orientation.  ``SourceSequences``
reads such a rollout file (the dataset schema of ``dexndm.data``) and samples sequences
uniformly among the trajectories whose ``gravity_dir`` matches the wrist orientation.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dexndm.data.reader import TrajectoryFile
from dexndm.hand import constants as hc

#: Largest angle (radians) between a trajectory's gravity_dir and the wrist's that still matches.
GRAVITY_TOLERANCE = 0.1




@dataclass
class Sequence:
    """One source sequence: ``target`` [T, 16] and the reset pose ``initial_target`` [16]
    (both clamped to the joint limits), ``index`` in the source file."""

    index: int
    target: np.ndarray
    initial_target: np.ndarray


class SourceSequences:
    """Target sequences of one rollout file for one wrist orientation.

    ``gravity_dir`` [3] is the wrist's unit gravity direction (hand frame).  Trajectories
    whose gravity_dir lies within ``tolerance`` radians of it are the candidates; if none
    does, every trajectory is (with a warning).  ``sample(rng)`` draws one uniformly.
    """

    def __init__(self, path: str | os.PathLike, gravity_dir: np.ndarray, tolerance: float = GRAVITY_TOLERANCE):
        self.path = Path(path)
        g = np.asarray(gravity_dir, dtype=float)
        g = g / np.linalg.norm(g)
        with TrajectoryFile(self.path) as f:
            indices = np.array(f.indices, dtype=int)
            if not len(indices):
                raise ValueError(f"{self.path}: no complete trajectories to replay")
            dirs = np.stack([f.load(int(i), ["gravity_dir"])["gravity_dir"] for i in indices]).astype(float)
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        angle = np.arccos(np.clip(dirs @ g, -1.0, 1.0))
        match = angle <= tolerance
        self.matched = bool(match.any())
        if not self.matched:
            warnings.warn(f"{self.path}: no trajectory has gravity_dir within {tolerance} rad of {g.tolist()}; "
                          f"sampling among all {len(indices)} trajectories", stacklevel=2)
            match[:] = True
        self.candidates = indices[match]
        self._file: TrajectoryFile | None = None

    def __len__(self) -> int:
        return len(self.candidates)

    def sample_index(self, rng: np.random.Generator) -> int:
        """A candidate trajectory index, uniformly."""
        return int(self.candidates[rng.integers(len(self.candidates))])

    def load(self, index: int) -> Sequence:
        if self._file is None:
            self._file = TrajectoryFile(self.path)
        traj = self._file.load(index, ["target", "initial_target"])
        return Sequence(index, hc.clamp_to_limits(traj["target"].astype(np.float64)),
                        hc.clamp_to_limits(traj["initial_target"].astype(np.float64)))

    def sample(self, rng: np.random.Generator) -> Sequence:
        return self.load(self.sample_index(rng))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "SourceSequences":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
