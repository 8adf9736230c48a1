"""Deploy bundles: everything a robot needs to run base + residual (DexNDM Sec. 3.3-3.4,
"deployed as base + residual"; DESIGN.md, the pipeline's last artifact).

A bundle is a directory::

    manifest.json   what the inputs are and how to read the outputs (below)
    policy.pt       TorchScript of DeployPolicy: (obs [B, D], q [B, 16], prev_target [B, 16])
                    -> (target [B, 16], command [B, 16]), radians, hardware joint order

The manifest records the observation layout and history length, the normalisation
statistics (also baked into the module), joint order, action scale, control rate,
joint limits, the domain/hand the residual was adapted to, the sha256 of the parent
checkpoints and of ``policy.pt``, and the bundle schema version.  :func:`load_bundle`
checks all of it against this code and refuses a mismatched, unknown, tampered or newer
bundle with a message saying what to do.  The manifest is JSON and ``policy.pt`` a
TorchScript archive (tensors and TorchScript code only; no Python pickle is loaded).

Precision (``precision=fp32|int8``, recorded in ``manifest.policy.precision``):

* ``fp32`` (default): exact, the bundle equals the PyTorch module within ``EXPORT_TOLERANCE``.
* ``int8``: dynamic int8 quantisation of every ``nn.Linear`` (weights int8 per output
  channel, activations quantised per call from their range; ``torch.ao.quantization.
  quantize_dynamic``).  The paper-size generalist (1024 wide, 5 blocks, ~16M parameters,
  64 MB fp32) is memory-bandwidth bound at batch 1; int8 weights are a quarter of the
  bytes (``dexndm bench deploy`` reports both).  The traced bundle is checked against the
  quantised module within ``EXPORT_TOLERANCE``, and against the fp32 module on
  ``DEVIATION_SAMPLES`` batch-1 inputs: the largest deviation of target and command (rad)
  goes into ``manifest.policy.quantization``, and an export whose command deviates by more
  than ``max_int8_deviation`` is refused.  torch 2.13 marks ``torch.ao.quantization``
  deprecated in favour of torchao's ``quantize_``, whose tensor subclasses do not
  TorchScript; the ao path is the one that traces, saves and loads here.

ONNX: ``torch.onnx.export`` in torch 2.13 needs ``onnxscript`` (not a dependency); the
TorchScript file is the supported format.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dexndm.hand import constants as hc
from dexndm.models.deploy_policy import DeployPolicy
from dexndm.sim.control import ACTION_SCALE, CONTROL_RATE_HZ
from dexndm.sim.observations import ObsLayout, deploy_layout
from dexndm.files import file_sha256

BUNDLE_FORMAT = "dexndm.bundle"
BUNDLE_SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
POLICY_FILE = "policy.pt"
#: Bundle outputs must equal the PyTorch module's within this (radians).
EXPORT_TOLERANCE = 1e-5
PRECISIONS = ("fp32", "int8")
#: Batch-1 inputs on which an int8 bundle's deviation from the fp32 module is measured.
DEVIATION_SAMPLES = 128
#: Default refusal threshold for an int8 bundle's command deviation from fp32 (rad; ~13 encoder ticks).
MAX_INT8_DEVIATION = 0.01


class BundleError(ValueError):
    """A bundle that this code cannot run safely; the message says why and what to do."""




def _floats(t: torch.Tensor) -> list[float]:
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def _example(policy: DeployPolicy, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lo, hi = policy.lower, policy.upper
    q = lo + (hi - lo) * torch.rand(batch, hc.NUM_JOINTS, generator=g)
    prev = lo + (hi - lo) * torch.rand(batch, hc.NUM_JOINTS, generator=g)
    obs = policy.base.obs_mean + policy.base.obs_std * torch.randn(batch, policy.base.obs_dim, generator=g)
    return obs, q, prev


def quantize_int8(policy: DeployPolicy) -> torch.nn.Module:
    """A dynamically int8-quantised copy of ``policy`` (every ``nn.Linear``; weights per output
    channel); ``policy`` itself is untouched.  Raises RuntimeError naming what is missing if
    this torch build has no quantised CPU engine."""
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if not engines:
        raise RuntimeError("precision=int8 needs a quantised CPU engine (fbgemm/x86 or qnnpack) and this torch "
                           "build has none; export with precision=fp32")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():     # "torch.ao.quantization is deprecated": see the module docstring
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        return quantize_dynamic(copy.deepcopy(policy).eval(), {torch.nn.Linear: per_channel_dynamic_qconfig},
                                dtype=torch.qint8)


def int8_deviation(fp32: DeployPolicy, int8: torch.nn.Module, samples: int = DEVIATION_SAMPLES) -> dict[str, float]:
    """Largest |int8 - fp32| (rad) of target and command over ``samples`` batch-1 inputs (the
    deploy batch: dynamic quantisation scales activations per call)."""
    dev = {"target": 0.0, "command": 0.0}
    with torch.no_grad():
        for s in range(samples):
            x = _example(fp32, 1, 1000 + s)
            for key, a, b in zip(dev, fp32(*x), int8(*x)):
                dev[key] = max(dev[key], float((a - b).abs().max()))
    return dev


def trace_policy(policy: DeployPolicy) -> torch.jit.ScriptModule:
    """TorchScript of ``policy`` (traced: the generalist's shape check is Python-only), checked
    against the module on fresh inputs at batch sizes 1 and 5 within ``EXPORT_TOLERANCE``."""
    policy = policy.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # The generalist's input-width check is Python: traced as a constant, which is what we want.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(policy, _example(policy, 1), check_trace=False)
        for batch, seed in ((1, 1), (5, 2)):
            x = _example(policy, batch, seed)
            for a, b in zip(policy(*x), traced(*x)):
                err = float((a - b).abs().max())
                if not err <= EXPORT_TOLERANCE:
                    raise RuntimeError(f"traced policy differs from the module by {err:.3g} rad at batch {batch}")
    return traced


def build_manifest(policy: DeployPolicy, meta: dict[str, Any], *, parents: dict[str, Any],
                   domain: Any, hand: str, history: int) -> dict[str, Any]:
    """The manifest of ``policy`` (see module docstring); ``meta`` from ``DeployPolicy.from_checkpoints``."""
    res = policy.residual if policy.has_residual else None
    gen_meta = meta.get("generalist") or {}
    return {
        "format": BUNDLE_FORMAT,
        "schema_version": BUNDLE_SCHEMA_VERSION,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "policy": {"file": POLICY_FILE, "format": "torchscript",
                   "inputs": {"obs": ["B", policy.base.obs_dim], "q": ["B", hc.NUM_JOINTS],
                              "prev_target": ["B", hc.NUM_JOINTS]},
                   "outputs": {"target": ["B", hc.NUM_JOINTS], "command": ["B", hc.NUM_JOINTS]},
                   "has_residual": bool(policy.has_residual)},
        "observation": {"layout": deploy_layout(history).to_dict(), "history": int(history)},
        "normalization": {
            "obs": {"mean": _floats(policy.base.obs_mean), "std": _floats(policy.base.obs_std)},
            "residual": None if res is None else {k: _floats(getattr(res, k)) for k in ("q_mean", "q_std", "a_mean", "a_std")},
        },
        "joint_order": list(hc.JOINT_NAMES),
        "action_scale": float(policy.action_scale),
        "control_rate_hz": float(gen_meta.get("control_rate_hz", CONTROL_RATE_HZ)),
        "joint_limits": {"lower": [float(x) for x in hc.JOINT_LOWER], "upper": [float(x) for x in hc.JOINT_UPPER]},
        "domain": domain,
        "hand": hand,
        "parents": parents,
        "models": {"generalist": gen_meta.get("config"), "residual": (meta.get("residual") or {}).get("config")},
    }


def export_bundle(generalist: str | os.PathLike, out: str | os.PathLike, residual: str | os.PathLike | None = None,
                  *, domain: Any = None, hand: str = "leap", history: int = 10, overwrite: bool = False,
                  precision: str = "fp32", max_int8_deviation: float | None = MAX_INT8_DEVIATION) -> Path:
    """Write a bundle directory ``out`` from a generalist (and optional residual) checkpoint.

    Written into a temporary sibling and renamed into place: a failed export leaves nothing.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another out= or pass overwrite=true")
    policy, meta = DeployPolicy.from_checkpoints(generalist, residual)
    parents = {"generalist": {"path": str(generalist), "sha256": file_sha256(generalist)},
               "residual": None if residual is None else {"path": str(residual), "sha256": file_sha256(residual)}}
    res_meta = meta.get("residual") or {}
    if domain is None and res_meta.get("dynamics_ckpt"):
        domain = {"from_residual_dynamics": res_meta["dynamics_ckpt"]}
    return write_bundle(policy, meta, out, parents=parents, domain=domain, hand=hand, history=history,
                        overwrite=overwrite, precision=precision, max_int8_deviation=max_int8_deviation)


def _precision_module(policy: DeployPolicy, precision: str,
                      max_int8_deviation: float | None) -> tuple[torch.nn.Module, dict[str, Any] | None]:
    """(module to trace, ``manifest.policy.quantization`` or None) for ``precision``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return policy, None
    qpolicy = quantize_int8(policy)
    dev = int8_deviation(policy, qpolicy)
    if max_int8_deviation is not None and not dev["command"] <= max_int8_deviation:
        raise ValueError(f"int8 quantisation moves the command by up to {dev['command']:.4g} rad from fp32 "
                         f"(> max_int8_deviation {max_int8_deviation:g} rad over {DEVIATION_SAMPLES} inputs); "
                         "export with precision=fp32, or raise max_int8_deviation if that error is acceptable")
    linears = sum(isinstance(m, torch.nn.Linear) for m in policy.modules())
    return qpolicy, {"scheme": "dynamic", "dtype": "qint8", "weights": "per output channel",
                     "activations": "per call, from their range", "layers": f"{linears} nn.Linear",
                     "api": "torch.ao.quantization.quantize_dynamic", "engine": torch.backends.quantized.engine,
                     "torch": torch.__version__, "max_abs_dev_vs_fp32_rad": dev, "deviation_samples": DEVIATION_SAMPLES,
                     "max_int8_deviation_rad": max_int8_deviation}


def write_bundle(policy: DeployPolicy, meta: dict[str, Any], out: str | os.PathLike, *, parents: dict[str, Any],
                 domain: Any = None, hand: str = "leap", history: int = 10, overwrite: bool = False,
                 precision: str = "fp32", max_int8_deviation: float | None = MAX_INT8_DEVIATION) -> Path:
    """Trace ``policy`` (quantised first for ``precision="int8"``), write ``policy.pt`` and
    ``manifest.json`` atomically into directory ``out``."""
    out = Path(out)
    module, quantization = _precision_module(policy.eval(), precision, max_int8_deviation)
    traced = trace_policy(module)
    manifest = build_manifest(policy, meta, parents=parents, domain=domain, hand=hand, history=history)
    manifest["policy"].update(precision=precision, quantization=quantization)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.exporting-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        traced.save(str(tmp / POLICY_FILE))
        manifest["policy"]["sha256"] = file_sha256(tmp / POLICY_FILE)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if out.exists():
            if not overwrite:
                raise FileExistsError(f"{out} appeared during export; not replacing it")
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@dataclass
class Bundle:
    """A loaded, checked bundle: ``policy(obs, q, prev_target) -> (target, command)``."""

    path: Path
    manifest: dict[str, Any]
    policy: torch.jit.ScriptModule
    layout: ObsLayout

    @property
    def history(self) -> int:
        return int(self.manifest["observation"]["history"])

    @property
    def sha256(self) -> str:
        return str(self.manifest["policy"]["sha256"])

    @property
    def action_scale(self) -> float:
        return float(self.manifest["action_scale"])

    @property
    def rate_hz(self) -> float:
        return float(self.manifest["control_rate_hz"])

    @property
    def precision(self) -> str:
        """``fp32`` or ``int8`` (bundles written before the option existed are fp32)."""
        return str(self.manifest["policy"].get("precision", "fp32"))

    def __call__(self, obs: torch.Tensor, q: torch.Tensor, prev_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy(obs, q, prev_target)


def _refuse(path: Path, why: str, todo: str) -> BundleError:
    return BundleError(f"deploy bundle {str(path)!r}: {why}; {todo}")


def check_manifest(m: Any, path: Path) -> ObsLayout:
    """Refuse a manifest this code cannot honour; returns its observation layout."""
    reexport = "re-export it with this dexndm version (dexndm export generalist=... residual=...)"
    if not isinstance(m, dict) or m.get("format") != BUNDLE_FORMAT:
        raise _refuse(path, f"not a dexndm bundle (manifest format {m.get('format') if isinstance(m, dict) else m!r})",
                      "export one with 'dexndm export'")
    v = m.get("schema_version")
    if not isinstance(v, int):
        raise _refuse(path, f"unknown schema version {v!r}", reexport)
    if v > BUNDLE_SCHEMA_VERSION:
        raise _refuse(path, f"written by a newer dexndm (bundle schema {v} > {BUNDLE_SCHEMA_VERSION} understood here)",
                      "upgrade dexndm on this machine")
    if v < BUNDLE_SCHEMA_VERSION:
        raise _refuse(path, f"old bundle schema {v} (this code reads {BUNDLE_SCHEMA_VERSION})", reexport)
    if list(m.get("joint_order", [])) != list(hc.JOINT_NAMES):
        raise _refuse(path, f"joint order {m.get('joint_order')} differs from this hand's {list(hc.JOINT_NAMES)}",
                      "permute with dexndm.hand.constants and re-export; never run a bundle in another joint order")
    try:
        obs = m["observation"]
        history = int(obs["history"])
        layout = ObsLayout.from_dict(obs["layout"])
        deploy_layout(history).check_compatible(layout)
        lim = m["joint_limits"]
        lower, upper = np.asarray(lim["lower"], float), np.asarray(lim["upper"], float)
        scale, rate = float(m["action_scale"]), float(m["control_rate_hz"])
        m["policy"]["sha256"], m["policy"]["file"]
        precision = m["policy"].get("precision", "fp32")
    except (KeyError, TypeError, ValueError) as e:
        raise _refuse(path, f"malformed or mismatched manifest ({e})", reexport) from None
    if lower.shape != (hc.NUM_JOINTS,) or not (np.allclose(lower, hc.JOINT_LOWER, atol=1e-6)
                                               and np.allclose(upper, hc.JOINT_UPPER, atol=1e-6)):
        raise _refuse(path, "its joint limits differ from this code's (dexndm.hand.constants)", reexport)
    if precision not in PRECISIONS:
        raise _refuse(path, f"unknown precision {precision!r} (this code runs {PRECISIONS})", reexport)
    if abs(scale - ACTION_SCALE) > 1e-9:
        raise _refuse(path, f"action scale {scale} differs from this code's {ACTION_SCALE}", reexport)
    if abs(rate - CONTROL_RATE_HZ) > 1e-9:
        raise _refuse(path, f"trained for {rate} Hz control, this loop runs at {CONTROL_RATE_HZ} Hz", reexport)
    return layout


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Load and check a bundle directory (or its ``manifest.json``)."""
    path = Path(path)
    if path.name == MANIFEST:
        path = path.parent
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {str(path)!r}: not a deploy bundle; export one with 'dexndm export'")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise _refuse(path, f"manifest is not valid JSON ({e})", "re-export it") from None
    layout = check_manifest(manifest, path)
    pfile = path / manifest["policy"]["file"]
    if not pfile.is_file():
        raise _refuse(path, f"policy file {pfile.name!r} is missing", "re-export it")
    if file_sha256(pfile) != manifest["policy"]["sha256"]:
        raise _refuse(path, f"{pfile.name} does not match the manifest's sha256 (modified or corrupted)", "re-export it")
    try:
        policy = torch.jit.load(str(pfile), map_location="cpu").eval()
    except RuntimeError as e:
        if manifest["policy"].get("precision") == "int8":
            raise _refuse(path, f"this torch build cannot load its int8 (quantised) policy ({str(e).splitlines()[0]})",
                          "re-export it with precision=fp32, or install a torch with a quantised CPU engine") from e
        raise
    for p in policy.parameters():
        p.requires_grad_(False)
    return Bundle(path, manifest, policy, layout)
