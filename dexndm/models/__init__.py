"""Neural networks of DexNDM as plain ``nn.Module`` s (dynamics models, Sec. 3.3)."""

from dexndm.models.dynamics import (
    DYNAMICS,
    STAT_KEYS,
    DynamicsModel,
    FingerWiseDynamics,
    JointWiseDynamics,
    SharedJointDynamics,
    WholeHandDynamics,
    build_dynamics,
    dynamics_stats,
    per_joint_error,
    rollout,
)
from dexndm.models.layers import GroupedLinear, GroupedMLP

__all__ = [
    "DYNAMICS", "STAT_KEYS", "DynamicsModel", "FingerWiseDynamics", "JointWiseDynamics",
    "SharedJointDynamics", "WholeHandDynamics", "build_dynamics", "dynamics_stats",
    "per_joint_error", "rollout", "GroupedLinear", "GroupedMLP",
]
