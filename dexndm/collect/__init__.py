"""Autonomous target-domain data collection (DexNDM Sec. 3.3, Appendix C): Chaos Box,
free-hand replay, base waves and the policy's own episodes, written as trajectory datasets (``dexndm.data``);
and, in simulation only, sim steps from other simulated hands' states (``sim_reference``), the data of the
residual's proxy reference."""

from __future__ import annotations

from dexndm.collect.strategies import STRATEGIES, collect

__all__ = ["collect", "STRATEGIES"]
