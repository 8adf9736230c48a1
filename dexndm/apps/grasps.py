"""``dexndm grasps``: build the grasp caches of an object set (every shape, scale bin and
listed wrist orientation), with a progress bar.  Existing caches are kept."""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig, OmegaConf
from rich.progress import Progress

from dexndm.apps import hydra_app
from dexndm.sim import grasps as grasp_cache
from dexndm.sim import orientations as ori
from dexndm.sim.config import EnvConfig
from dexndm.sim.domain import load_domain
from dexndm.sim.task import TaskSampler


def run(cfg: DictConfig) -> dict[str, int]:
    """Returns the number of grasps in each cache built or found."""
    env_cfg = EnvConfig.from_dict(OmegaConf.to_container(cfg.env, resolve=True))
    env_cfg.grasp_generate = True
    unknown = [o for o in cfg.orientations if o not in ori.WRIST_ORIENTATIONS]
    if unknown:
        raise ValueError(f"orientations {unknown} unknown; use names from {list(ori.NAMED_ORIENTATIONS)}")
    domain = load_domain(env_cfg.domain)
    sampler = TaskSampler(env_cfg, domain)
    counts: dict[str, int] = {}
    jobs = [(i, s, o) for i in range(len(sampler.shapes)) for s in range(len(sampler.scales)) for o in cfg.orientations]
    with Progress() as progress:
        task = progress.add_task(f"grasps for {env_cfg.object_set}", total=len(jobs))
        for i, s, o in jobs:
            rows = sampler.grasps(i, s, o)
            path = grasp_cache.cache_path(env_cfg.grasp_path, sampler.shapes[i], float(sampler.scales[s]), o,
                                          env_cfg.grasp, domain, np.array(ori.WRIST_ORIENTATIONS[o]))
            counts[path.name] = len(rows)
            progress.advance(task)
    print(f"[grasps] {len(counts)} caches in {env_cfg.grasp_path}, grasps per cache: "
          f"min {min(counts.values())}, median {int(np.median(list(counts.values())))}")
    return counts


main = hydra_app("grasps", run)
