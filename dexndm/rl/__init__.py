"""PPO oracles on the privileged observation, one per object category (DexNDM Sec. 3.1, App. C).

``train(cfg)`` / ``PPOTrainer`` train one; ``load_oracle(path)`` rebuilds a trained one
for rollouts and deployment; ``load_checkpoint`` reads a checkpoint as data.
"""

from __future__ import annotations

from dexndm.rl.checkpoint import CheckpointError, load_checkpoint, load_oracle
from dexndm.rl.config import PPOConfig


def train(cfg) -> dict:
    from dexndm.rl.ppo import train as _train

    return _train(cfg)


__all__ = ["CheckpointError", "PPOConfig", "load_checkpoint", "load_oracle", "train"]
