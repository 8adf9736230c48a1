"""Simulation: the LEAP hand in MuJoCo, rotation tasks, target domains, the Chaos Box."""

from __future__ import annotations


def make_env(cfg=None, device: str = "cpu", **overrides):
    """Build the batched TorchRL rotation environment.

    ``cfg`` is an :class:`~dexndm.sim.config.EnvConfig`, a mapping of its fields (e.g. a
    Hydra ``env`` node), or None for defaults; keyword overrides are applied on top:
    ``make_env(num_envs=256, object_set="cuboids", wrist="palm_down")``.
    """
    from dexndm.conf import to_plain
    from dexndm.sim.config import EnvConfig
    from dexndm.sim.env import RotationEnv

    data = cfg.to_dict() if isinstance(cfg, EnvConfig) else to_plain(cfg)
    data.update(overrides)
    return RotationEnv(EnvConfig.from_dict(data), device=device)


def make_chaos_box(cfg=None, device: str = "cpu", **overrides):
    """Build the batched Chaos Box environment (hand in a box of balls, open-loop replay).

    ``cfg`` is a :class:`~dexndm.sim.chaos_box.ChaosBoxConfig`, a mapping of its fields, or
    None; keyword overrides are applied on top.
    """
    from dexndm.conf import to_plain
    from dexndm.sim.chaos_box import ChaosBoxConfig, ChaosBoxEnv

    data = cfg.to_dict() if isinstance(cfg, ChaosBoxConfig) else to_plain(cfg)
    data.update(overrides)
    return ChaosBoxEnv(ChaosBoxConfig.from_dict(data), device=device)


__all__ = ["make_env", "make_chaos_box"]
