"""HDF5 trajectory LightningDataModules shared by every model (DESIGN.md, "Trajectory datasets (HDF5)")."""

from datamodules.trajectory import TrajectoryDataModule

__all__ = ["TrajectoryDataModule"]
