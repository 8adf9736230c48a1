"""Per-joint errors of dynamics checkpoints on eval sets (DexNDM Fig. 6 and Fig. 8(A)).

``dexndm eval-dynamics --ckpt jointwise=a.ckpt --ckpt wholehand=b.ckpt --eval ood=x.h5
--eval sim=y.h5 --out DIR [--horizon 10]`` evaluates every checkpoint on every eval set:

- one-step error: mean |q_hat_{t+1} - q_{t+1}| per joint (radians, ``[16]``) over every
  window of the file (t = W-1 .. T-1: q_hist = q[t-W+1..t], a_hist = target[t-W+1..t]),
  exactly the samples ``TrajectoryDataModule(kind="dynamics")`` yields;
- multi-step (open-loop) error: from every window with t = W-1 .. T-H, ``rollout`` feeds
  the model its own predictions for H steps with the file's commanded targets
  a_{t..t+H-1}; the error at horizon step k is mean |q_hat_{t+k} - q_{t+k}| over windows
  and joints (``[H]``; per joint ``[H, 16]`` in the JSON).  Step 1 of the rollout is the
  one-step prediction, on the (fewer) windows that have H future steps.

The report directory holds ``dynamics_eval.md`` (one-step mean per checkpoint x eval set,
then one per-joint table per eval set), ``dynamics_eval.csv`` (one row per checkpoint,
eval set and metric), ``dynamics_eval.json`` and ``dynamics_eval.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from datamodules import windows as Wn
from dexndm.data.reader import TrajectoryFile
from dexndm.hand.constants import JOINT_NAMES, NUM_JOINTS
from dexndm.models.dynamics import rollout
from dexndm.models.lit_dynamics import load_dynamics

J = NUM_JOINTS
REPORT_NAME = "dynamics_eval"


# -- data ------------------------------------------------------------------------------------

def _load_eval(path: str | os.PathLike) -> dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"eval set {str(path)!r} does not exist; pass --eval NAME=FILE.h5 of a "
                                f"trajectory file (dexndm rollout / data merge)")
    with TrajectoryFile(path) as tf:
        meta = tf.meta
        if len(tf) == 0:
            raise ValueError(f"eval set {str(path)!r} holds no complete trajectories")
        data = tf.load_all(("q", "target"))
    data["control_rate_hz"] = float(meta.get("control_rate_hz", float("nan")))
    return data


def _one_step_windows(data: Mapping[str, Any], window: int) -> tuple[np.ndarray, np.ndarray]:
    return Wn.window_index(data["length"], "dynamics", window)


def _rollout_windows(data: Mapping[str, Any], window: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(traj [S], t [S]) of windows with t = W-1 .. T-H (H future targets and states exist)."""
    lengths = np.maximum(np.asarray(data["length"], dtype=np.int64) - (horizon - 1), 0)
    return Wn.window_index(lengths, "dynamics", window)


def _gather_rollout(data: Mapping[str, Any], traj: np.ndarray, t: np.ndarray, window: int,
                    horizon: int) -> dict[str, np.ndarray]:
    """q_hist q[t-W+1..t] [S, W, 16]; a_hist target[t-W+1..t-1] [S, W-1, 16];
    future_a target[t..t+H-1] [S, H, 16]; q_true q[t+1..t+H] [S, H, 16]."""
    so, st = data["state_offsets"][traj][:, None], data["step_offsets"][traj][:, None]
    t = t[:, None]
    kq = t + np.arange(-window + 1, 1)[None]
    ka = t + np.arange(-window + 1, 0)[None]
    kf = t + np.arange(0, horizon)[None]
    q, a = data["q"], data["target"]
    return {"q_hist": q[so + kq], "a_hist": a[st + ka].reshape(len(t), window - 1, J),
            "future_a": a[st + kf], "q_true": q[so + kf + 1]}


# -- evaluation ------------------------------------------------------------------------------

def _check_pair(ckpt_name: str, meta: Mapping[str, Any], window: int, set_name: str,
                data: Mapping[str, Any], horizon: int) -> None:
    rate_c, rate_d = float(meta.get("control_rate_hz", float("nan"))), data["control_rate_hz"]
    if math.isfinite(rate_c) and math.isfinite(rate_d) and abs(rate_c - rate_d) > 1e-6:
        raise ValueError(f"checkpoint {ckpt_name!r} was trained at {rate_c} Hz but eval set {set_name!r} "
                         f"is recorded at {rate_d} Hz; resample the data or use a matching checkpoint")
    longest = int(np.max(data["length"]))
    if window > longest:
        raise ValueError(f"checkpoint {ckpt_name!r} needs a history of W={window} steps but the longest "
                         f"trajectory of eval set {set_name!r} has T={longest}: no window fits")
    if window - 1 + horizon > longest:
        raise ValueError(f"a {horizon}-step rollout of checkpoint {ckpt_name!r} (W={window}) needs trajectories "
                         f"of T >= {window - 1 + horizon}; eval set {set_name!r} has at most T={longest}. "
                         f"Lower --horizon")


@torch.no_grad()
def _one_step(net: torch.nn.Module, data: Mapping[str, Any], batch_size: int) -> tuple[np.ndarray, int]:
    traj, t = _one_step_windows(data, net.window)
    total, n = torch.zeros(J, dtype=torch.float64), 0
    for i in range(0, len(t), batch_size):
        b = Wn.gather_dynamics(data, traj[i:i + batch_size], t[i:i + batch_size], net.window)
        pred = net(torch.from_numpy(b["q_hist"]), torch.from_numpy(b["a_hist"]))
        total += (pred - torch.from_numpy(b["q_next"])).abs().double().sum(0)
        n += len(pred)
    return (total / n).numpy(), n


@torch.no_grad()
def _multi_step(net: torch.nn.Module, data: Mapping[str, Any], horizon: int,
                batch_size: int) -> tuple[np.ndarray, int]:
    traj, t = _rollout_windows(data, net.window, horizon)
    total, n = torch.zeros(horizon, J, dtype=torch.float64), 0
    for i in range(0, len(t), batch_size):
        b = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in
             _gather_rollout(data, traj[i:i + batch_size], t[i:i + batch_size], net.window, horizon).items()}
        pred = rollout(net, b["q_hist"], b["a_hist"], b["future_a"])          # [B, H, 16]
        total += (pred - b["q_true"]).abs().double().sum(0)
        n += len(pred)
    return (total / n).numpy(), n


def evaluate_dynamics(checkpoints: Mapping[str, str | os.PathLike], eval_sets: Mapping[str, str | os.PathLike], *,
                      horizon: int = 10, batch_size: int = 4096, out: str | os.PathLike | None = None) -> dict:
    """Errors of every checkpoint on every eval set.

    Returns ``{"horizon", "joint_names", "checkpoints": {name: {path, variant, window}},
    "eval_sets": {name: {path, trajectories}}, "results": {ckpt: {set: {"joint_err" [16],
    "mean", "n_windows", "multistep_err" [H], "multistep_joint_err" [H][16], "n_rollouts"}}}}``
    (lists of floats, radians).  With ``out`` the report files are written there too.
    """
    if not checkpoints or not eval_sets:
        raise ValueError("need at least one checkpoint and one eval set")
    if horizon < 1 or batch_size < 1:
        raise ValueError(f"horizon and batch_size must be >= 1, got {horizon}, {batch_size}")
    for name, path in checkpoints.items():
        if not Path(path).is_file():
            raise FileNotFoundError(f"checkpoint {name!r}: {str(path)!r} does not exist")
    datasets = {name: _load_eval(path) for name, path in eval_sets.items()}
    nets = {name: load_dynamics(path) for name, path in checkpoints.items()}
    for cname, (net, meta) in nets.items():
        for sname, data in datasets.items():
            _check_pair(cname, meta, net.window, sname, data, horizon)
    results: dict[str, dict[str, Any]] = {}
    for cname, (net, _) in nets.items():
        results[cname] = {}
        for sname, data in datasets.items():
            err, n = _one_step(net, data, batch_size)
            ms, m = _multi_step(net, data, horizon, batch_size)
            results[cname][sname] = {"joint_err": err.tolist(), "mean": float(err.mean()), "n_windows": int(n),
                                     "multistep_err": ms.mean(1).tolist(), "multistep_joint_err": ms.tolist(),
                                     "n_rollouts": int(m)}
    report = {
        "horizon": int(horizon), "joint_names": list(JOINT_NAMES),
        "checkpoints": {n: {"path": str(checkpoints[n]), "variant": meta.get("variant"), "window": int(net.window)}
                        for n, (net, meta) in nets.items()},
        "eval_sets": {n: {"path": str(eval_sets[n]), "trajectories": int(len(d["length"]))}
                      for n, d in datasets.items()},
        "results": results,
    }
    if out is not None:
        write_report(report, out)
    return report


# -- report ----------------------------------------------------------------------------------

def _markdown(report: Mapping[str, Any]) -> str:
    ckpts, sets, res = list(report["checkpoints"]), list(report["eval_sets"]), report["results"]
    H = report["horizon"]
    lines = ["# Dynamics evaluation", "",
             "One-step mean absolute joint error (rad), mean over the 16 joints:", "",
             "| checkpoint | " + " | ".join(sets) + " |", "|---" * (len(sets) + 1) + "|"]
    for c in ckpts:
        lines.append(f"| {c} | " + " | ".join(f"{res[c][s]['mean']:.5f}" for s in sets) + " |")
    lines += ["", f"Open-loop error at horizon step {H} (rad):", "",
              "| checkpoint | " + " | ".join(sets) + " |", "|---" * (len(sets) + 1) + "|"]
    for c in ckpts:
        lines.append(f"| {c} | " + " | ".join(f"{res[c][s]['multistep_err'][-1]:.5f}" for s in sets) + " |")
    for s in sets:
        lines += ["", f"## {s}: one-step error per joint (rad)", "",
                  "| joint | " + " | ".join(ckpts) + " |", "|---" * (len(ckpts) + 1) + "|"]
        for j, joint in enumerate(report["joint_names"]):
            lines.append(f"| {joint} | " + " | ".join(f"{res[c][s]['joint_err'][j]:.5f}" for c in ckpts) + " |")
    return "\n".join(lines) + "\n"


def _csv_rows(report: Mapping[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = [["checkpoint", "eval_set", "metric", "index", "value"]]
    for c, per_set in report["results"].items():
        for s, r in per_set.items():
            rows.append([c, s, "one_step_mean", "", r["mean"]])
            rows += [[c, s, "one_step_joint", name, v] for name, v in zip(report["joint_names"], r["joint_err"])]
            rows += [[c, s, "multistep", k + 1, v] for k, v in enumerate(r["multistep_err"])]
    return rows


def _plot(report: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ckpts, sets, res = list(report["checkpoints"]), list(report["eval_sets"]), report["results"]
    fig, axes = plt.subplots(len(sets), 2, figsize=(13, 3.2 * len(sets)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1]})
    x = np.arange(J)
    width = 0.8 / len(ckpts)
    steps = np.arange(1, report["horizon"] + 1)
    for row, s in enumerate(sets):
        bar, curve = axes[row]
        for i, c in enumerate(ckpts):
            bar.bar(x + (i - (len(ckpts) - 1) / 2) * width, res[c][s]["joint_err"], width, label=c)
            curve.plot(steps, res[c][s]["multistep_err"], marker="o", ms=3, label=c)
        bar.set_xticks(x, report["joint_names"], rotation=45, fontsize=7)
        bar.set_ylabel("one-step |err| (rad)", fontsize=8)
        bar.set_title(f"{s}: per-joint one-step error", fontsize=9)
        curve.set_xlabel("horizon step", fontsize=8)
        curve.set_title(f"{s}: open-loop error", fontsize=9)
        for ax in (bar, curve):
            ax.tick_params(labelsize=7)
        bar.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: Mapping[str, Any], out: str | os.PathLike) -> dict[str, Path]:
    """Write ``dynamics_eval.{md,csv,json,png}`` under ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"{REPORT_NAME}.{ext}" for ext in ("md", "csv", "json", "png")}
    paths["md"].write_text(_markdown(report))
    with open(paths["csv"], "w", newline="") as fh:
        csv.writer(fh).writerows(_csv_rows(report))
    paths["json"].write_text(json.dumps(report, indent=1))
    _plot(report, paths["png"])
    return paths


# -- CLI -------------------------------------------------------------------------------------

def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{flag} expects NAME=PATH, got {item!r}")
        if name in out:
            raise ValueError(f"{flag} name {name!r} given twice")
        out[name] = path
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dexndm eval-dynamics", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", action="append", default=[], metavar="NAME=PATH", required=True,
                        help="a dynamics checkpoint (DynamicsModule .ckpt); repeat for several")
    parser.add_argument("--eval", action="append", default=[], metavar="NAME=FILE.h5", required=True,
                        help="an eval trajectory file; repeat for several")
    parser.add_argument("--out", required=True, help="report directory")
    parser.add_argument("--horizon", type=int, default=10, help="open-loop rollout steps (default 10)")
    parser.add_argument("--batch-size", type=int, default=4096)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        report = evaluate_dynamics(_pairs(args.ckpt, "--ckpt"), _pairs(args.eval, "--eval"),
                                   horizon=args.horizon, batch_size=args.batch_size, out=args.out)
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"dexndm eval-dynamics: {exc}", file=sys.stderr)
        return 2
    print(_markdown(report))
    print(f"report written to {Path(args.out) / REPORT_NAME}.{{md,csv,json,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
