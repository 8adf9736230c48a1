"""Policy specs -> callables that drive a rotation environment (DexNDM Sec. 3.1-3.3, 4.1).

One place turns what a user writes into something that acts, for evaluation
(``dexndm eval``) and task-aware collection (``dexndm collect task_aware``):

* ``zero``: hold the reset grasp (relative action 0);
* ``oracle:PATH``: a PPO oracle checkpoint (``dexndm.rl.checkpoint.load_oracle``); acts on
  the env's privileged ``observation`` with its deterministic mean;
* ``generalist:PATH``: a BC generalist ``.ckpt``; acts on the deployable ``policy_obs``;
* ``generalist:PATH+residual:PATH``: the generalist plus a residual policy, deployed as in
  Sec. 3.3 through ``DeployPolicy``: the chain a_t = clip(a_{t-1} + action / 24) keeps the
  base policy's targets and the hand is sent clip(a_t + pi_res(q_t, a_t)).  In simulation
  the split goes through the env's ``target_offset`` (added to what is sent, not chained).
* ``generalist:PATH+ideal:BOUND[@SOURCE]``: the generalist plus the residual a perfect dynamics
  model would give, computed from the simulators themselves (``dexndm.eval.ideal``): the
  ceiling of the residual in sim-to-sim benchmarks, not a deployable policy.

A spec is such a string or a mapping ``{kind, checkpoint, residual, ideal, ideal_source}``; every checkpoint is
loaded with ``torch.load(..., weights_only=True)`` by its loader, and a policy refuses an
environment whose observation layout differs from the one it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from dexndm.hand import constants as hc
from dexndm.files import file_sha256
from dexndm.sim.observations import privileged_options

J = hc.NUM_JOINTS
KINDS: tuple[str, ...] = ("zero", "oracle", "generalist")
_SPEC_HELP = ("a policy spec is 'zero', 'oracle:PATH.pt', 'generalist:PATH.ckpt', "
              "'generalist:PATH.ckpt+residual:PATH.ckpt' or 'generalist:PATH.ckpt+ideal:BOUND[@SOURCE_DOMAIN]' "
              "(or a mapping {kind, checkpoint, residual, ideal, ideal_source})")


@dataclass(frozen=True)
class PolicySpec:
    """What to load: ``kind`` in KINDS, ``checkpoint`` (oracle/generalist), optional ``residual``, or
    ``ideal`` (the bound, rad, of the simulator-computed ideal residual) with its ``ideal_source`` domain."""

    kind: str
    checkpoint: str | None = None
    residual: str | None = None
    ideal: float | None = None
    ideal_source: str = "nominal"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown policy kind {self.kind!r}; use one of {KINDS}: {_SPEC_HELP}")
        if self.kind == "zero" and (self.checkpoint or self.residual):
            raise ValueError("policy 'zero' takes no checkpoint or residual")
        if self.kind != "zero" and not self.checkpoint:
            raise ValueError(f"policy {self.kind!r} needs a checkpoint: write '{self.kind}:PATH'")
        if self.residual and self.kind != "generalist":
            raise ValueError(f"a residual corrects the deployable generalist, not a {self.kind!r} policy: "
                             "write 'generalist:PATH.ckpt+residual:PATH.ckpt'")
        if self.ideal is not None:
            if self.kind != "generalist" or self.residual:
                raise ValueError(f"'+ideal:' goes on a generalist without a residual, got {self.kind!r}"
                                 f"{' with a residual' if self.residual else ''}: write 'generalist:PATH.ckpt+ideal:0.1'")
            if not np.isfinite(self.ideal) or self.ideal < 0:
                raise ValueError(f"the ideal residual's bound must be a number >= 0 (rad), got {self.ideal!r}")

    def __str__(self) -> str:
        if self.kind == "zero":
            return "zero"
        text = f"{self.kind}:{self.checkpoint}"
        if self.ideal is not None:
            return text + f"+ideal:{self.ideal:g}" + (f"@{self.ideal_source}" if self.ideal_source != "nominal" else "")
        return text + (f"+residual:{self.residual}" if self.residual else "")

    def default_name(self) -> str:
        """A short label for tables: ``zero``, ``oracle``, ``generalist``, ``generalist+residual`` or
        ``generalist+ideal``."""
        return self.kind + ("+residual" if self.residual else "") + ("+ideal" if self.ideal is not None else "")


def parse_policy(spec: str | Mapping[str, Any] | PolicySpec) -> PolicySpec:
    """A ``PolicySpec`` from a spec string (``KIND[:PATH][+residual:PATH]``) or mapping."""
    if isinstance(spec, PolicySpec):
        return spec
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"kind", "checkpoint", "residual", "ideal", "ideal_source"})
        if unknown or "kind" not in spec:
            raise ValueError(f"bad policy mapping {dict(spec)!r} (unknown keys {unknown}); {_SPEC_HELP}")
        ideal = spec.get("ideal")
        return PolicySpec(str(spec["kind"]), _opt_str(spec.get("checkpoint")), _opt_str(spec.get("residual")),
                          _bound(ideal, spec) if ideal is not None else None, str(spec.get("ideal_source") or "nominal"))
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"bad policy spec {spec!r}; {_SPEC_HELP}")
    base, plus, rest = spec.strip().partition("+ideal:")
    if plus:
        bound, _, source = rest.partition("@")
        return PolicySpec(*_parse_base(base, spec), ideal=_bound(bound, spec), ideal_source=source.strip() or "nominal")
    return PolicySpec(*_parse_base(spec, spec))


def _bound(text: Any, spec: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ValueError(f"policy spec {spec!r}: '+ideal:' takes a bound in rad, e.g. '+ideal:0.1'; {_SPEC_HELP}") from None


def _parse_base(text: str, spec: str) -> tuple[str, str | None, str | None]:
    """(kind, checkpoint, residual) of ``KIND[:PATH][+residual:PATH]``."""
    base, plus, rest = text.strip().partition("+residual:")
    if plus and not rest:
        raise ValueError(f"policy spec {spec!r}: '+residual:' needs a path; {_SPEC_HELP}")
    kind, colon, path = base.partition(":")
    if colon and not path:
        raise ValueError(f"policy spec {spec!r}: '{kind}:' needs a path; {_SPEC_HELP}")
    return kind.strip(), path or None, rest or None


def parse_policies(specs: Any) -> dict[str, PolicySpec]:
    """Named specs, in order, from a mapping {name: spec} or a list of specs (names derived,
    made unique with a suffix)."""
    if isinstance(specs, (str, PolicySpec)) or (isinstance(specs, Mapping) and "kind" in specs):
        specs = [specs]
    if isinstance(specs, Mapping):
        out = {str(name): parse_policy(s) for name, s in specs.items()}
    else:
        out = {}
        for s in list(specs or []):
            p = parse_policy(s)
            name, k = p.default_name(), 2
            while name in out:
                name, k = f"{p.default_name()}_{k}", k + 1
            out[name] = p
    if not out:
        raise ValueError(f"no policies given; {_SPEC_HELP}")
    return out


def _opt_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)




def _existing(path: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what} checkpoint {str(p)!r} does not exist; check the path in the policy spec "
                                f"({_SPEC_HELP})")
    return p


class Policy:
    """Acts on a rotation env's step input: ``act(td, env) -> (action [N, 16], target_offset
    [N, 16] or None)``; ``meta`` says what was loaded (kind, paths, sha256s)."""

    obs_key = "observation"

    def __init__(self, spec: PolicySpec):
        self.spec = spec
        self.meta: dict[str, Any] = {"spec": str(spec), "kind": spec.kind}

    def check_env(self, env) -> None:
        """Raise ``ValueError`` if ``env`` builds observations this policy cannot read (or reads
        its actions as poses: only oracles trained so output them)."""
        if getattr(env.cfg, "pose_action_range", None) is not None:
            raise ValueError(f"{self.spec}: outputs relative actions, but the env reads actions as poses "
                             f"(env.pose_action_range={env.cfg.pose_action_range}); set it to null")

    def env_requirements(self) -> dict[str, Any]:
        """``EnvConfig`` fields this policy's observation and action fix (an env built with them
        passes ``check_env``, other settings permitting): by default relative actions."""
        return {"pose_action_range": None}

    def close(self) -> None:
        """Release what acting built (nothing by default)."""

    @torch.no_grad()
    def act(self, td, env) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def step_input(self, td, env):
        """Write ``action`` (and ``target_offset`` where there is a residual) into ``td``; return it."""
        action, offset = self.act(td, env)
        td["action"] = action
        if offset is not None:
            td["target_offset"] = offset
        return td


class ZeroPolicy(Policy):
    """Holds the reset grasp: relative action 0."""

    @torch.no_grad()
    def act(self, td, env):
        return torch.zeros(int(env.batch_size[0]), J), None


class OraclePolicy(Policy):
    """A PPO oracle on the privileged observation ``[N, P]`` (deterministic mean)."""

    def __init__(self, spec: PolicySpec):
        from dexndm.rl.checkpoint import load_oracle

        super().__init__(spec)
        path = _existing(spec.checkpoint, "oracle")
        self.model, meta = load_oracle(path)
        self.layout = meta["obs_layout"]
        self.action_scale = float(meta["action_scale"])
        self.pose_action_range = meta["config"].get("env", {}).get("pose_action_range")
        self.meta.update(checkpoint=str(path), checkpoint_sha256=file_sha256(path),
                         frames=int(meta["counters"].get("frames", 0)), lineage_frames=meta["lineage"]["frames"],
                         object_set=meta["config"].get("env", {}).get("object_set"))

    def env_requirements(self) -> dict[str, Any]:
        return {**privileged_options(self.layout), "pose_action_range": self.pose_action_range}

    def check_env(self, env) -> None:
        if env.cfg.pose_action_range != self.pose_action_range:
            raise ValueError(f"oracle {self.spec.checkpoint}: trained with env.pose_action_range="
                             f"{self.pose_action_range}, the env has {env.cfg.pose_action_range}")
        try:
            env.priv_layout.check_compatible(self.layout)
        except ValueError as exc:
            raise ValueError(f"oracle {self.spec.checkpoint}: reads another privileged observation than this env "
                             f"builds (env.privileged_history={env.cfg.privileged_history}?). {exc}") from None
        if abs(self.action_scale - env.cfg.action_scale) > 1e-12:
            raise ValueError(f"oracle {self.spec.checkpoint}: action_scale {self.action_scale} differs from the env's "
                             f"{env.cfg.action_scale}")

    @torch.no_grad()
    def act(self, td, env):
        return self.model.act(td["observation"]).clamp(-1.0, 1.0), None


class GeneralistPolicy(Policy):
    """``DeployPolicy`` (generalist + optional residual) on the deployable ``policy_obs`` ``[N, D]``.

    Per step: action = clip(pi_base(o_t)); a_t = clip(a_{t-1} + scale * action) with a_{t-1}
    the env's chain target (``env.control.target``); offset = command - a_t where command =
    clip(a_t + pi_res(q_t, a_t)) and q_t the last measured joints of the observation.
    """

    obs_key = "policy_obs"

    def __init__(self, spec: PolicySpec):
        from dexndm.models.deploy_policy import DeployPolicy

        super().__init__(spec)
        gen = _existing(spec.checkpoint, "generalist")
        res = _existing(spec.residual, "residual") if spec.residual else None
        self.policy, meta = DeployPolicy.from_checkpoints(gen, res)
        self.lower = torch.as_tensor(hc.JOINT_LOWER, dtype=torch.float32)
        self.upper = torch.as_tensor(hc.JOINT_UPPER, dtype=torch.float32)
        self.meta.update(checkpoint=str(gen), checkpoint_sha256=file_sha256(gen),
                         residual=str(res) if res else None, residual_sha256=file_sha256(res) if res else None,
                         layout=meta["generalist"].get("layout"))

    @property
    def has_residual(self) -> bool:
        return bool(self.policy.has_residual)

    def check_env(self, env) -> None:
        from dexndm.sim.observations import ObsLayout

        super().check_env(env)
        try:
            env.deploy_layout.check_compatible(ObsLayout.from_dict(self.meta["layout"]))
        except ValueError as exc:
            raise ValueError(f"generalist {self.spec.checkpoint}: reads another deploy observation than this env "
                             f"builds (env.deploy_history={env.cfg.deploy_history}); use the deploy history the "
                             f"generalist was trained with. {exc}") from None
        if abs(self.policy.action_scale - env.cfg.action_scale) > 1e-12:
            raise ValueError(f"generalist {self.spec.checkpoint}: action_scale {self.policy.action_scale} differs "
                             f"from the env's {env.cfg.action_scale}")

    @staticmethod
    def last_q(obs: torch.Tensor, env) -> torch.Tensor:
        """q_t ``[N, 16]``: the newest measured joints of the deploy observation's history."""
        hist = obs[:, env.deploy_layout.slice("proprio_history")].reshape(obs.shape[0], -1, 2, J)
        return hist[:, -1, 0]

    @torch.no_grad()
    def base_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The base policy's relative action ``[N, 16]`` in [-1, 1] (NaN and inf read as 0)."""
        return torch.nan_to_num(self.policy.base(obs), nan=0.0, posinf=0.0, neginf=0.0).clamp(-1.0, 1.0)

    @torch.no_grad()
    def act(self, td, env):
        obs = td["policy_obs"]
        action = self.base_action(obs)
        if not self.has_residual:
            return action, None
        prev = torch.as_tensor(env.control.target, dtype=torch.float32)
        target = torch.minimum(torch.maximum(prev + self.policy.action_scale * action, self.lower), self.upper)
        command = torch.minimum(torch.maximum(target + self.policy.offset(obs, self.last_q(obs, env), target),
                                              self.lower), self.upper)
        return action, command - target


def load_policy(spec: str | Mapping[str, Any] | PolicySpec) -> Policy:
    """Load what ``spec`` names (``FileNotFoundError`` / ``ValueError`` with what to do)."""
    spec = parse_policy(spec)
    if spec.ideal is not None:
        from dexndm.eval.ideal import IdealResidualPolicy

        return IdealResidualPolicy(spec)
    if spec.kind == "zero":
        return ZeroPolicy(spec)
    if spec.kind == "oracle":
        return OraclePolicy(spec)
    return GeneralistPolicy(spec)
