"""Trajectory datasets: the one HDF5 schema every dexndm stage writes and reads.

Sim rollouts of the oracles, target-domain collection (Chaos Box, ...) and real-hand
recordings share it (DESIGN.md, "Trajectory datasets (HDF5)"; DexNDM Appendix C).
``schema`` holds the field table, ``TrajectoryWriter`` appends crash-safely,
``TrajectoryFile`` reads, ``validate``/``info``/``merge`` check and combine files.
"""

from dexndm.data.reader import TrajectoryFile
from dexndm.data.schema import SCHEMA_VERSION, SchemaError
from dexndm.data.validate import Problem, info, merge, validate
from dexndm.data.writer import TrajectoryError, TrajectoryWriter

__all__ = ["SCHEMA_VERSION", "SchemaError", "TrajectoryError", "TrajectoryWriter", "TrajectoryFile",
           "Problem", "validate", "info", "merge"]
