"""dexndm: dexterous in-hand rotation on the LEAP hand with joint-wise neural dynamics (DexNDM).

Pipeline stages live in subpackages named for what they do: ``hand`` (LEAP constants and
model), ``sim`` (MuJoCo task, domains, Chaos Box), ``rl``, ``models``, ``collect``,
``deploy``, ``eval``.
"""

import os as _os

# Offscreen rendering backend, read by MuJoCo at import: OSMesa on CPU-only machines
# unless the user chose one (MUJOCO_GL=egl on GPU machines).
if "MUJOCO_GL" not in _os.environ and not _os.environ.get("DISPLAY"):
    _os.environ["MUJOCO_GL"] = "osmesa"

__version__ = "0.1.0"
