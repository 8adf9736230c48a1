"""Simulation: the LEAP hand in MuJoCo, rotation tasks, target domains, the Chaos Box."""

from __future__ import annotations


def make_env(cfg=None, device: str = "cpu", **overrides):
    """Build the batched TorchRL rotation environment.

    ``cfg`` is an :class:`~dexndm.sim.config.EnvConfig`, a mapping of its fields (e.g. a
    Hydra ``env`` node), or None for defaults; keyword overrides are applied on top:
    ``make_env(num_envs=256, object_set="cuboids", wrist="palm_down")``.
    """
    from dexndm.sim.config import EnvConfig
    from dexndm.sim.env import RotationEnv

    if isinstance(cfg, EnvConfig):
        data = cfg.to_dict()
    else:
        try:
            from omegaconf import DictConfig, OmegaConf

            if isinstance(cfg, DictConfig):
                cfg = OmegaConf.to_container(cfg, resolve=True)
        except ImportError:  # pragma: no cover
            pass
        data = dict(cfg or {})
    data.update(overrides)
    return RotationEnv(EnvConfig.from_dict(data), device=device)


__all__ = ["make_env"]
