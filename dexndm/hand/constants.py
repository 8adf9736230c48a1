"""LEAP hand constants: the one place for joint names, order, limits and poses.

Canonical order everywhere in dexndm (arrays, datasets, checkpoints, bundles) is the
hardware motor-ID order 0-15: index, middle, ring, thumb; per finger MCP side
(abduction), MCP forward (flexion), PIP, DIP.  Angles are radians in the simulator
convention (flat hand near 0, positive closes); the real hand's +pi offset lives only
in the hardware driver.

Sources (see ../shared/LEAP_FACTS.md): joint ranges from the LEAP URDF and hand API;
Isaac Gym DOF order and canonical grasp from the DexNDM paper (Appendix C, Tables 8/11).
"""

from __future__ import annotations

import numpy as np

NUM_JOINTS = 16

#: Joint names in hardware ID order. The names are those of the hand's MuJoCo/URDF
#: description: ``rot`` is MCP side (abduction), ``mcp`` MCP forward (flexion); on the
#: thumb cmc, axl, mcp, ipl are IDs 12-15.
JOINT_NAMES: tuple[str, ...] = (
    "if_rot", "if_mcp", "if_pip", "if_dip",
    "mf_rot", "mf_mcp", "mf_pip", "mf_dip",
    "rf_rot", "rf_mcp", "rf_pip", "rf_dip",
    "th_cmc", "th_axl", "th_mcp", "th_ipl",
)

FINGER_NAMES: tuple[str, ...] = ("index", "middle", "ring", "thumb")
#: Hardware joint indices of each finger, in FINGER_NAMES order ([4, 4]).
FINGER_JOINTS: np.ndarray = np.arange(NUM_JOINTS).reshape(4, 4)
#: Finger index of every joint ([16]).
JOINT_FINGER: np.ndarray = np.repeat(np.arange(4), 4)

#: Joint limits (radians, sim convention), hardware order.
JOINT_LOWER: np.ndarray = np.array([
    -1.047, -0.314, -0.506, -0.366,
    -1.047, -0.314, -0.506, -0.366,
    -1.047, -0.314, -0.506, -0.366,
    -0.349, -0.470, -1.200, -1.340,
])
JOINT_UPPER: np.ndarray = np.array([
    1.047, 2.230, 1.885, 2.042,
    1.047, 2.230, 1.885, 2.042,
    1.047, 2.230, 1.885, 2.042,
    2.094, 2.443, 1.900, 1.880,
])

#: Isaac Gym DOF order of the LEAP URDF: position i holds hardware joint ISAAC_TO_HW[i].
#: (index, thumb, middle, ring; within a finger MCP forward before MCP side.)
ISAAC_TO_HW: np.ndarray = np.array([1, 0, 2, 3, 12, 13, 14, 15, 5, 4, 6, 7, 9, 8, 10, 11])
#: Inverse permutation: hardware joint j sits at Isaac position HW_TO_ISAAC[j].
HW_TO_ISAAC: np.ndarray = np.argsort(ISAAC_TO_HW)

#: The paper's canonical grasp pose (Appendix C), given there in Isaac Gym order.
_CANONICAL_POSE_ISAAC = np.array([
    1.244, 0.082, 0.265, 0.298, 1.163, 1.104, 0.953, -0.138,
    1.096, 0.005, 0.080, 0.150, 1.337, 0.029, 0.285, 0.317,
])

JOINT_ORDERS: tuple[str, ...] = ("hardware", "isaac")


def _permutation(order: str, to_hardware: bool) -> np.ndarray | None:
    if order == "hardware":
        return None
    if order == "isaac":
        return HW_TO_ISAAC if to_hardware else ISAAC_TO_HW
    raise ValueError(f"unknown joint order {order!r}; use one of {JOINT_ORDERS}")


def _reorder(values: np.ndarray, order: str, to_hardware: bool) -> np.ndarray:
    values = np.asarray(values)
    if values.shape[-1] != NUM_JOINTS:
        raise ValueError(f"expected {NUM_JOINTS} joint values in the last axis, got shape {values.shape}")
    perm = _permutation(order, to_hardware)
    return values.copy() if perm is None else values[..., perm]


def to_hardware_order(values: np.ndarray, order: str) -> np.ndarray:
    """Reorder the last axis ([..., 16]) from ``order`` into hardware order."""
    return _reorder(values, order, to_hardware=True)


def from_hardware_order(values: np.ndarray, order: str) -> np.ndarray:
    """Reorder the last axis ([..., 16]) from hardware order into ``order``."""
    return _reorder(values, order, to_hardware=False)


#: Canonical grasp pose in hardware order ([16]).
CANONICAL_POSE: np.ndarray = to_hardware_order(_CANONICAL_POSE_ISAAC, "isaac")

#: Fingertip bodies (distal links) per finger and the fingertip point in that body's
#: frame (metres), from the hand's MuJoCo description.
FINGERTIP_BODIES: tuple[str, ...] = ("if_ds", "mf_ds", "rf_ds", "th_ds")
FINGERTIP_POINTS: np.ndarray = np.array([
    [0.0, -0.05, 0.015],
    [0.0, -0.05, 0.015],
    [0.0, -0.05, 0.015],
    [0.0, -0.06, -0.015],
])

#: Joints whose positive direction curls the hand closed around an object (finger
#: flexion: MCP forward, PIP, DIP; thumb: all but the axial rotation); grasp
#: generation closes the hand along this mask.
FLEXION_MASK: np.ndarray = np.zeros(NUM_JOINTS)
FLEXION_MASK[[1, 2, 3, 5, 6, 7, 9, 10, 11, 12, 14, 15]] = 1.0

#: Every moving link of the hand, in finger order (index, middle, ring, thumb), proximal first.
LINK_BODIES: tuple[str, ...] = (
    "if_bs", "if_px", "if_md", "if_ds",
    "mf_bs", "mf_px", "mf_md", "mf_ds",
    "rf_bs", "rf_px", "rf_md", "rf_ds",
    "th_mp", "th_bs", "th_px", "th_ds",
)
#: Bodies whose contacts are sensed: the palm and every link.
CONTACT_BODIES: tuple[str, ...] = ("palm",) + LINK_BODIES

#: Fingertip span (index to ring tip) of the real hand, metres (LEAP paper / DexNDM C).
FINGERTIP_SPAN = 0.095


def clamp_to_limits(q: np.ndarray) -> np.ndarray:
    """Clamp joint values ([..., 16], hardware order) to the joint limits."""
    return np.clip(q, JOINT_LOWER, JOINT_UPPER)
