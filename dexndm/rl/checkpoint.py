"""Oracle checkpoints: data only, written atomically, enough to resume or deploy (DexNDM Sec. 3.1).

A checkpoint is a dict of tensors and plain containers that ``torch.load(...,
weights_only=True)`` reads; anything that is not (RNG states, the config) is stored as
a JSON string.  It carries everything needed to rebuild the policy's preprocessing --
observation layout, joint order, action scale, control rate, normaliser statistics,
config -- and everything needed to resume training exactly: optimiser, learning-rate
schedule, counters, the reward schedule's reset counter and every RNG state.

Keys: ``format``, ``model`` (``ActorCritic.state_dict``), ``optimizer``, ``obs_norm``
(mean/var/count), ``schedule``, ``counters`` (iteration, frames, env0_resets),
``rng`` (JSON + torch tensors), ``config`` (JSON), ``obs_layout``, ``joint_order``,
``action_scale``, ``control_rate_hz``, ``obs_dim``, ``act_dim``, ``versions``, ``lineage``
(``frames_before``, ``complete``, ``parents``: the runs it was warm-started from, as of the warm start;
``lineage_frames`` adds this run's frames).
"""

from __future__ import annotations

import json
import pickle
import random
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from dexndm.files import atomic_path

FORMAT = "dexndm.oracle.v1"


class CheckpointError(RuntimeError):
    """A file that is not a loadable dexndm oracle checkpoint."""


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` to ``path`` atomically (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    _check_plain(payload, "checkpoint")
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)
    return path


_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _check_plain(obj, where: str) -> None:
    """Refuse anything ``weights_only`` loading would refuse, naming where it is."""
    if type(obj) in (dict, OrderedDict):
        for k, v in obj.items():
            if type(k) not in (str, int):
                raise TypeError(f"{where}: key {k!r} is a {type(k).__name__}; use str or int keys")
            _check_plain(v, f"{where}[{k!r}]")
    elif type(obj) in (list, tuple):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
    elif type(obj) not in _PLAIN and not isinstance(obj, torch.Tensor):
        raise TypeError(f"{where} is a {type(obj).__name__}; checkpoints hold only tensors and plain "
                        "containers (encode other values with to_json)")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint as data (``weights_only=True``); clear errors for missing, pickled or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `dexndm train_oracle` "
                                "or pass the path of an existing .pt file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln] or [str(exc).splitlines()[0]]
        raise CheckpointError(
            f"{path} holds pickled Python objects, which dexndm refuses to load because loading them can run "
            f"arbitrary code (torch.load weights_only=True: {lines[0]}). "
            "A dexndm checkpoint holds only tensors and plain containers. If you trust the file, load it yourself "
            "with torch.load(path, weights_only=False), keep the tensors and plain values, and save that again; "
            "otherwise regenerate it with `dexndm train_oracle`.") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a dexndm oracle checkpoint (format {found!r}, expected {FORMAT!r})")
    return ckpt


def to_json(obj) -> str:
    return json.dumps(obj, sort_keys=True)


def from_json(text: str):
    return json.loads(text)


# ---------------------------------------------------------------------- RNG states
def capture_rng(env_rng: np.random.Generator) -> dict:
    """Every RNG the training consumes: torch (CPU and CUDA), numpy's global, python's, the env's."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": to_json(_np_state_to_json(np.random.get_state())),
        "python": to_json(_py_state_to_json(random.getstate())),
        "env": to_json(env_rng.bit_generator.state),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict, env_rng: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["torch_cuda"]])
    np.random.set_state(_np_state_from_json(from_json(state["numpy"])))
    random.setstate(_py_state_from_json(from_json(state["python"])))
    env_rng.bit_generator.state = from_json(state["env"])


def _np_state_to_json(st):
    return [st[0], st[1].tolist(), int(st[2]), int(st[3]), float(st[4])]


def _np_state_from_json(st):
    return (st[0], np.asarray(st[1], dtype=np.uint32), st[2], st[3], st[4])


def _py_state_to_json(st):
    return [st[0], list(st[1]), st[2]]


def _py_state_from_json(st):
    return (st[0], tuple(st[1]), st[2])


#: Settings added after oracle checkpoints were written, with the value that reproduces the code
#: before them.  A checkpoint without such a key resumes only when the run sets that value (e.g.
#: env.max_sag=null), and ``load_oracle`` fills it in, so rollouts and evaluations of an older
#: checkpoint run the environment it was trained in rather than today's defaults.
LEGACY_VALUES = {"env.max_sag": None, "ppo.noise_correlation": 0.0, "env.gravity_start": 1.0,
                 "env.gravity_ramp_steps": 0, "ppo.log_std_min": None, "ppo.log_std_max": None, "env.grasp.seed": 0,
                 "env.grasp.fallback": True, "env.reward.position": 0.0, "env.reward.rot_gate_distance": None,
                 "env.reward.tip_contact": 0.0, "env.privileged_displacement": False,
                 "env.reward.clip_backward": True, "env.reward.pose_tolerance": 0.0,
                 "env.privileged_grasp_pose": False, "env.pose_action_range": None,
                 "env.ungraspable": "error", "env.reward.rot_gate_pose": None,
                 "ppo.precision": "fp32", "env.reward.drift": 0.0, "env.reward.drift_steps": 40.0}


def with_legacy_values(config: dict) -> dict:
    """``config`` with every ``LEGACY_VALUES`` key it lacks set to its legacy value (in place)."""
    for dotted, value in LEGACY_VALUES.items():
        *parents, leaf = dotted.split(".")
        node = config
        for name in parents:
            node = node.setdefault(name, {}) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf not in node:
            node[leaf] = value
    return config


# ---------------------------------------------------------------------- lineage
def lineage_frames(ckpt: dict) -> dict:
    """What it took to train the checkpoint's policy: ``{"frames", "complete", "parents"}``.

    ``frames`` counts this run's frames plus those of every run it was warm-started from
    (``init_from``, recursively): the number a frame budget such as "within 50M frames" is about.
    ``parents`` lists those checkpoints, nearest first, as ``{"path", "sha256"}``: the hash names the
    parent after its path has been overwritten by that run's later checkpoints (``None`` where the
    checkpoint was written before hashes were recorded).  Checkpoints written before lineages were
    recorded carry none; for them ``frames`` is the run's own count and ``complete`` is False when
    the run was warm-started (its parents' frames are then missing from the sum).
    """
    own = int(ckpt["counters"]["frames"])
    lineage = ckpt.get("lineage")
    if lineage is not None:
        return {"frames": own + int(lineage["frames_before"]), "complete": bool(lineage["complete"]),
                "parents": [_parent_entry(p) for p in lineage["parents"]]}
    parent = from_json(ckpt["config"]).get("init_from") if "config" in ckpt else None
    return {"frames": own, "complete": not parent, "parents": [_parent_entry(str(parent))] if parent else []}


def _parent_entry(parent: str | dict) -> dict:
    """A lineage parent as ``{"path", "sha256"}``; lineages written before hashes held bare paths."""
    if isinstance(parent, str):
        return {"path": parent, "sha256": None}
    return {"path": str(parent["path"]), "sha256": parent.get("sha256")}


# ---------------------------------------------------------------------- deploy side
def load_oracle(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the trained ``ActorCritic`` (eval mode) and return ``(model, metadata)``.

    ``model.act(obs)`` maps privileged observations ``[B, obs_dim]`` (laid out as
    ``metadata["obs_layout"]``) to deterministic actions ``[B, 16]`` in [-1, 1].
    ``metadata["config"]`` is the training config, settings added since filled with their
    legacy values (``LEGACY_VALUES``).
    """
    from dexndm.hand import constants as hc
    from dexndm.rl.config import PPOConfig
    from dexndm.rl.networks import ActorCritic
    from dexndm.sim.observations import ObsLayout

    ckpt = load_checkpoint(path, map_location=device)
    if list(ckpt["joint_order"]) != list(hc.JOINT_NAMES):
        raise CheckpointError(f"{path} was trained with joint order {ckpt['joint_order']}; "
                              f"dexndm uses {list(hc.JOINT_NAMES)}")
    config = with_legacy_values(from_json(ckpt["config"]))
    model = ActorCritic(int(ckpt["obs_dim"]), int(ckpt["act_dim"]), PPOConfig.from_dict(config["ppo"]))
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    meta = {k: ckpt[k] for k in ("action_scale", "control_rate_hz", "joint_order", "counters")}
    meta["lineage"] = lineage_frames(ckpt)
    meta["obs_layout"] = ObsLayout.from_dict(ckpt["obs_layout"])
    meta["config"] = config
    return model, meta
