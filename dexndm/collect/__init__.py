"""Autonomous target-domain data collection (DexNDM Sec. 3.3, Appendix C): Chaos Box,
free-hand replay and base waves, written as trajectory datasets (``dexndm.data``)."""

from __future__ import annotations

from dexndm.collect.strategies import STRATEGIES, collect

__all__ = ["collect", "STRATEGIES"]
