"""Typed configs from plain mappings, in one place: a dataclass is built from a dict (Hydra node, YAML, checkpoint)
only after every key is checked against its fields, so a typo in a sweep or a hardware file raises naming the key
and the valid ones instead of silently running a default."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, where: str, tuple_keys: frozenset[str] = frozenset()) -> T:
    """``cls(**data)`` after rejecting keys ``cls`` has no field for; lists under ``tuple_keys`` become tuples
    (YAML has no tuples). ``where`` names the config section in the error (``"env.grasp"``)."""
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; valid keys: {sorted(names)}")
    return cls(**{k: (tuple(v) if isinstance(v, list) and k in tuple_keys else v) for k, v in data.items()})
