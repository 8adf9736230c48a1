"""Command-line applications behind ``dexndm <command>``: thin Hydra shells around
plain functions that tests call directly."""

from __future__ import annotations

import functools
from typing import Any, Callable

import hydra
from omegaconf import DictConfig

from dexndm.conf import register


def hydra_app(config_name: str, body: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """The console entry of an app: registers the typed configs, composes ``dexndm/conf/<config_name>.yaml`` with
    the command line under ``@hydra.main`` and calls ``body(cfg)``. Hydra names the job (its log file) after
    ``body``'s module."""

    @hydra.main(version_base=None, config_path="../conf", config_name=config_name)
    @functools.wraps(body)
    def task(cfg: DictConfig) -> Any:
        return body(cfg)

    def main() -> Any:
        register()
        return task()

    return main
