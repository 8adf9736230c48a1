"""Shared fixtures: tiny, real configurations of the simulator (no mocks)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import dexndm  # noqa: F401  (picks MUJOCO_GL before mujoco is imported)
import numpy as np
import pytest

from dexndm.sim.objects import object_set

#: One cuboid, one scale bin: a grasp cache builds in about a second.
TINY_SET = "cuboids"


@pytest.fixture(scope="session")
def grasp_dir(tmp_path_factory):
    """Grasp caches shared by the whole test session (built on first use)."""
    return str(tmp_path_factory.mktemp("grasps"))


@pytest.fixture(scope="session")
def tiny_env_cfg(grasp_dir):
    """Keyword arguments for a small, fast rotation environment."""
    first = object_set(TINY_SET)[0].name
    return dict(num_envs=4, nthread=2, object_set=TINY_SET, object_names=[first], wrist="palm_up", axes="+z",
                grasp_dir=grasp_dir, grasp={"candidates": 32}, seed=0, randomization={"scale_bins": 1})


def experiment_script(name: str):
    """Import ``experiments/NAME.py`` (the scripts there are not a package) as a module."""
    path = Path(__file__).resolve().parents[1] / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def zero_action(n: int):
    import torch

    return torch.zeros(n, 16)


def pytest_configure(config):
    np.set_printoptions(precision=4, suppress=True)
