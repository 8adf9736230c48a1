"""Objects without a stable grasp: a clear error by default, or skipped and reported (``env.ungraspable``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from dexndm.sim import grasps as G
from dexndm.sim import orientations as ori
from dexndm.sim.config import EnvConfig
from dexndm.sim.domain import load_domain
from dexndm.sim.objects import object_set
from dexndm.sim.task import TaskSampler

#: A search nothing passes (the object must not move 1 um while held), made cheap: one round of 8.
IMPOSSIBLE = {"candidates": 8, "rounds": 1, "min_grasps": 1, "max_shift": 1e-6, "fallback": False}


@pytest.fixture(scope="module")
def two_cuboids(tmp_path_factory, tiny_env_cfg):
    """Env settings over two cuboids where only the first has grasps: its cache (found by a real
    search under the test session's settings) is stored under the impossible settings' name, so
    the sampler loads it for the first cuboid and really searches, in vain, for the second."""
    root = tmp_path_factory.mktemp("ungraspable")
    shapes = object_set("cuboids")[:2]
    dom, g = load_domain("nominal"), ori.gravity_directions("palm_up")[0]
    scale = float(np.mean(shapes[0].scale_range))                 # the one scale bin of tiny_env_cfg
    found = G.ensure_cache(root, dom, shapes[0], scale, "palm_up", g, cfg=G.GraspConfig(candidates=32))
    strict = G.GraspConfig(**IMPOSSIBLE)
    G.save_cache(G.cache_path(root, shapes[0], scale, "palm_up", strict, dom, g), found, {"object": shapes[0].name})
    return {**tiny_env_cfg, "grasp_dir": str(root), "grasp": IMPOSSIBLE,
            "object_names": [s.name for s in shapes]}


def test_an_ungraspable_object_stops_with_the_way_out(two_cuboids):
    sampler = TaskSampler(EnvConfig.from_dict(two_cuboids), load_domain("nominal"))
    with pytest.raises(G.NoGraspFound, match="env.ungraspable=skip"):
        sampler.sample(np.random.default_rng(0), 16)


def test_skipped_objects_are_redrawn_reproducibly_and_reported(two_cuboids):
    cfg = EnvConfig.from_dict({**two_cuboids, "ungraspable": "skip"})
    second = cfg.object_names[1]
    a = TaskSampler(cfg, load_domain("nominal"))
    ep = a.sample(np.random.default_rng(0), 16)
    assert (ep.object_index == 0).all()                     # every draw of the second cuboid was replaced
    assert a.ungraspable == [f"{second}@{np.mean(a.shapes[1].scale_range):.3f}/palm_up"]
    assert [m.nbody for m in ep.models] == [ep.models[0].nbody] * 16
    # A sampler that already knows the pair is ungraspable draws the same episodes (common random numbers).
    again = a.sample(np.random.default_rng(0), 16)
    np.testing.assert_array_equal(again.grasp, ep.grasp)
    fresh = TaskSampler(cfg, load_domain("nominal")).sample(np.random.default_rng(0), 16)
    np.testing.assert_array_equal(fresh.grasp, ep.grasp)
    np.testing.assert_array_equal(fresh.object_mass, ep.object_mass)


def test_a_failed_search_is_recorded_and_not_repeated(two_cuboids, monkeypatch):
    """Each eval condition builds its own sampler: the failed search must not run again in each."""
    cfg = EnvConfig.from_dict({**two_cuboids, "ungraspable": "skip"})
    TaskSampler(cfg, load_domain("nominal")).sample(np.random.default_rng(0), 16)
    assert len(list(Path(two_cuboids["grasp_dir"]).rglob("*.nograsp"))) == 1

    def no_search(*args, **kwargs):
        raise AssertionError("searched again for a pair already recorded as ungraspable")

    monkeypatch.setattr(G, "generate_grasps", no_search)
    again = TaskSampler(cfg, load_domain("nominal"))
    again.sample(np.random.default_rng(0), 16)
    assert again.ungraspable == [f"{cfg.object_names[1]}@{np.mean(again.shapes[1].scale_range):.3f}/palm_up"]
    strict = TaskSampler(EnvConfig.from_dict(two_cuboids), load_domain("nominal"))
    with pytest.raises(G.NoGraspFound, match="delete it to search again"):
        strict.sample(np.random.default_rng(0), 16)


def test_a_set_with_no_graspable_object_is_an_error(two_cuboids):
    cfg = EnvConfig.from_dict({**two_cuboids, "ungraspable": "skip", "object_names": two_cuboids["object_names"][1:]})
    with pytest.raises(G.NoGraspFound, match="no object of set 'cuboids' has a stable grasp"):
        TaskSampler(cfg, load_domain("nominal")).sample(np.random.default_rng(0), 2)


def test_ungraspable_mode_is_validated():
    with pytest.raises(ValueError, match="env.ungraspable must be one of"):
        EnvConfig.from_dict({"ungraspable": "ignore"})
    assert dataclasses.asdict(EnvConfig())["ungraspable"] == "error"
