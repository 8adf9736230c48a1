"""Hydra configs.  Typed nodes (the dataclasses' defaults) are registered in the
ConfigStore by ``register()``, so every field can be overridden on the command line
and YAML files hold only what differs."""

from __future__ import annotations

_registered = False


def to_plain(cfg) -> dict:
    """A config node (Hydra DictConfig, dataclass-free mapping, or None) as plain nested dicts."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg or {})


def register() -> None:
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    from dexndm.rl.config import PPOConfig
    from dexndm.sim.config import EnvConfig

    cs = ConfigStore.instance()
    cs.store(group="env", name="schema", node=EnvConfig)
    cs.store(group="ppo", name="schema", node=PPOConfig)
    _registered = True
