"""dexndm: dexterous in-hand rotation on the LEAP hand with joint-wise neural dynamics (DexNDM).

Pipeline stages live in subpackages named for what they do: ``hand`` (LEAP constants and
model), ``sim`` (MuJoCo task, domains, Chaos Box), ``rl``, ``models``, ``collect``,
``deploy``, ``eval``.
"""

import ctypes.util as _ctypes_util
import os as _os

# Offscreen rendering backend, read by MuJoCo at import: OSMesa on CPU-only machines
# unless the user chose one (MUJOCO_GL=egl on GPU machines).  Only when libOSMesa is
# installed: MuJoCo's import fails outright (not with an ImportError) when MUJOCO_GL
# names a missing library, and simulation must work without any GL at all.
if ("MUJOCO_GL" not in _os.environ and not _os.environ.get("DISPLAY")
        and _ctypes_util.find_library("OSMesa")):
    _os.environ["MUJOCO_GL"] = "osmesa"

__version__ = "0.1.0"
