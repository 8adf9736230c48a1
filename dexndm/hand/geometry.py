"""LEAP hand kinematic tree and collision geometry, as data.

Numbers from the hand's published MuJoCo description (derived from its URDF), as
collected in ../shared/LEAP_FACTS.md ("Kinematics and collision geometry").  Every
hinge axis is (0, 0, -1) in its body frame.  ``dexndm.hand.model`` turns these tables
into an MjSpec; physical parameters (gains, damping, masses...) come from a domain.
"""

from __future__ import annotations

from dataclasses import dataclass

HINGE_AXIS = (0.0, 0.0, -1.0)


@dataclass(frozen=True)
class LinkSpec:
    """One body of the hand: placement in its parent, its joint, nominal mass and COM."""

    name: str
    parent: str
    pos: tuple[float, float, float]
    quat: tuple[float, float, float, float] | None
    joint: str | None
    mass: float
    com: tuple[float, float, float]


# Parents are listed before children; fingers in order index, middle, ring, thumb.
_FINGER_Q1 = (0.500003, -0.5, -0.499997, 0.5)
_FINGER_Q2 = (0.500003, 0.5, -0.5, 0.499997)
_BS_COM = (-0.022516, 0.033882, 0.016359)
_PX_COM = (0.0075, -0.0002, -0.011)
_MD_COM = (0.0054215, -0.029148, 0.015)
_DS_COM = (-0.0008794, -0.027019, 0.014594)


def _finger(prefix: str, base_pos, base_quat, ds_y: float) -> list[LinkSpec]:
    return [
        LinkSpec(f"{prefix}_bs", "palm", base_pos, base_quat, f"{prefix}_mcp", 0.044, _BS_COM),
        LinkSpec(f"{prefix}_px", f"{prefix}_bs", (-0.0122, 0.0381, 0.0145), _FINGER_Q1, f"{prefix}_rot", 0.032, _PX_COM),
        LinkSpec(f"{prefix}_md", f"{prefix}_px", (0.015, 0.0143, -0.013), _FINGER_Q2, f"{prefix}_pip", 0.037, _MD_COM),
        LinkSpec(f"{prefix}_ds", f"{prefix}_md", (0.0, ds_y, 0.0002), None, f"{prefix}_dip", 0.016, _DS_COM),
    ]


LINKS: tuple[LinkSpec, ...] = tuple(
    [LinkSpec("palm", "leap_mount", (0.124, -0.0305, -0.06045), (0.0, 1.0, 0.0, -0.175), None, 0.237,
              (-0.049542, -0.042914, -0.010227))]
    + _finger("if", (-0.007, 0.023, -0.0187), (0.5, 0.5, 0.5, -0.5), -0.0361)
    + _finger("mf", (-0.0071, -0.0224, -0.0187), (0.500003, 0.5, 0.5, -0.499997), -0.0361)
    + _finger("rf", (-0.00709, -0.0678, -0.0187), (0.500003, 0.5, 0.5, -0.499997), -0.03609)
    + [
        LinkSpec("th_mp", "palm", (-0.0693, -0.0012, -0.0216), (0.707109, 0.0, 0.707105, 0.0), "th_cmc", 0.032, _PX_COM),
        LinkSpec("th_bs", "th_mp", (0.0, 0.0143, -0.013), _FINGER_Q2, "th_axl", 0.003, (0.0, 0.0, -0.0070806)),
        LinkSpec("th_px", "th_bs", (0.0, 0.0145, -0.017), (0.707109, -0.707105, 0.0, 0.0), "th_mcp", 0.038,
                 (-0.0020593, 0.015912, -0.013733)),
        LinkSpec("th_ds", "th_px", (0.0, 0.0466, 0.0002), (1.32679e-06, 0.0, 0.0, 1.0), "th_ipl", 0.049,
                 (0.00096191, -0.024203, -0.014419)),
    ]
)


@dataclass(frozen=True)
class BoxSpec:
    """A collision box: half-sizes, pose in the body frame, and whether it is a fingertip pad."""

    body: str
    half: tuple[float, float, float]
    pos: tuple[float, float, float]
    quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    fingertip: bool = False


_FINGER_TIP_POS = (-0.0012969, -0.0335524, 0.0145207)
_FINGER_TIP_QUAT = (0.703552, 0.709596, -0.0292107, -0.0252203)
_TIP_HALF = (0.01, 0.012, 0.016)


def _finger_boxes(prefix: str) -> list[BoxSpec]:
    return [
        BoxSpec(f"{prefix}_bs", (0.01, 0.003, 0.017), (0.0, 0.018, 0.0147)),
        BoxSpec(f"{prefix}_px", (0.017, 0.013, 0.011), (0.0075, -0.0002, -0.011)),
        BoxSpec(f"{prefix}_md", (0.008, 0.003, 0.013), (0.0, -0.02, 0.015)),
        BoxSpec(f"{prefix}_md", (0.017, 0.011, 0.013), (0.0075, -0.035, 0.015)),
        BoxSpec(f"{prefix}_ds", (0.01, 0.003, 0.015), (0.0, -0.017, 0.015)),
        BoxSpec(f"{prefix}_ds", _TIP_HALF, _FINGER_TIP_POS, _FINGER_TIP_QUAT, fingertip=True),
    ]


BOXES: tuple[BoxSpec, ...] = tuple(
    [
        BoxSpec("leap_mount", (0.002, 0.025, 0.005), (0.0405, 0.02, 0.009), (0.57346234, 0.0, 0.81923192, 0.0)),
        BoxSpec("leap_mount", (0.005, 0.005, 0.005), (0.05, 0.053, 0.002), (0.4987168, 0.64994038, -0.34910175, 0.45495826)),
        BoxSpec("palm", (0.011, 0.013, 0.017), (-0.009, 0.008, -0.011)),
        BoxSpec("palm", (0.011, 0.013, 0.017), (-0.009, -0.037, -0.011)),
        BoxSpec("palm", (0.011, 0.013, 0.017), (-0.009, -0.082, -0.011)),
        BoxSpec("palm", (0.029, 0.01, 0.023), (-0.066, -0.078, -0.0115), (0.989016, 0.0, 0.0, -0.147806)),
        BoxSpec("palm", (0.01, 0.06, 0.015), (-0.03, -0.035, -0.003)),
        BoxSpec("palm", (0.005, 0.06, 0.01), (-0.032, -0.035, -0.024), (0.923956, 0.0, 0.382499, 0.0)),
        BoxSpec("palm", (0.012, 0.058, 0.023), (-0.048, -0.033, -0.0115)),
        BoxSpec("palm", (0.022, 0.026, 0.023), (-0.078, -0.053, -0.0115)),
        BoxSpec("palm", (0.002, 0.018, 0.017), (-0.098, -0.009, -0.006)),
        BoxSpec("palm", (0.022, 0.028, 0.002), (-0.078, -0.003, 0.01)),
    ]
    + _finger_boxes("if") + _finger_boxes("mf") + _finger_boxes("rf")
    + [
        BoxSpec("th_mp", (0.017, 0.013, 0.011), (-0.0075, -0.0002, -0.011)),
        BoxSpec("th_px", (0.01, 0.02, 0.012), (0.0, 0.0105, -0.014)),
        BoxSpec("th_ds", (0.01, 0.018, 0.012), (0.0, -0.0085, -0.015)),
        BoxSpec("th_ds", _TIP_HALF, (-0.00127744, -0.0455619, -0.0144774), (0.708101, 0.705072, -0.0294902, -0.024426),
                fingertip=True),
    ]
)


def contact_exclusions() -> list[tuple[str, str]]:
    """Body pairs whose contacts the description excludes.

    Palm and mount with every finger body except the distal links; the three finger
    bases with each other and with the thumb's first body.  Without them a jointless
    palm shows constant false palm/finger contacts.
    """
    non_distal = [link.name for link in LINKS if link.joint is not None and not link.name.endswith("_ds")]
    pairs = [(base, body) for base in ("leap_mount", "palm") for body in non_distal]
    pairs.append(("leap_mount", "palm"))
    bases = ["if_bs", "mf_bs", "rf_bs", "th_mp"]
    pairs += [(a, b) for i, a in enumerate(bases) for b in bases[i + 1:]]
    return pairs
