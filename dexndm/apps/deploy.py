"""``dexndm deploy``: run an exported bundle on a hand at 20 Hz and record every tick
(DexNDM Sec. 3.4 and 4.4; the loop is :mod:`dexndm.deploy.loop`).

``hand=sim`` drives a MuJoCo target domain, ``hand=emulated`` the real Dynamixel stack
over a pty emulator (no hardware), ``hand=leap`` a LEAP hand.  Writes the recording
(``record.path``, HDF5 dataset schema) and ``deploy.json`` (the report) beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dexndm.apps import hydra_app
from dexndm.conf import to_plain


def run(cfg: DictConfig | dict) -> dict:
    """Deploy; returns the report as a dict (reason, message, ticks, timing, hand metrics, paths)."""
    import torch

    from dexndm.deploy.commands import make_command_source
    from dexndm.deploy.export import load_bundle
    from dexndm.deploy.hands import HandSpec, make_hand
    from dexndm.deploy.loop import DeployLoop, LoopConfig
    from dexndm.deploy.recorder import SegmentRecorder, open_writer
    from dexndm.typed_config import from_mapping

    cfg = to_plain(OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg)
    if not cfg.get("bundle"):
        raise ValueError("deploy: give an exported bundle, e.g. 'bundle=bundles/mine'; make one from the released "
                         "generalist with 'dexndm export generalist=checkpoints/generalist/generalist.ckpt "
                         "out=bundles/mine'")
    bundle = load_bundle(cfg["bundle"])
    spec = HandSpec.from_dict(cfg.get("hand") or {})
    loop_cfg = from_mapping(LoopConfig, cfg.get("loop"), "loop")
    rec = dict(cfg.get("record") or {})
    cmd = dict(cfg.get("commands") or {})
    torch.set_num_threads(int(cfg.get("torch_threads", 1)))
    if bundle.manifest.get("hand") not in (None, spec.kind, "leap"):
        print(f"[deploy] note: bundle made for hand {bundle.manifest.get('hand')!r}, running on {spec.kind!r}")
    hand = make_hand(spec)
    writer = None
    hand.connect()
    try:
        if rec.get("enabled", True):
            source = {"kind": "policy", "bundle": str(bundle.path), "bundle_sha256": bundle.sha256,
                      "parents": bundle.manifest.get("parents"), "hand": spec.kind}
            writer = open_writer(rec["path"], domain=hand.describe(), source=source, config=cfg)
        recorder = SegmentRecorder(writer, int(rec.get("segment_ticks", 200)), with_object=hand.object_pose() is not None)
        commands = make_command_source(cmd.get("source"), int(cmd.get("port", 5555)))
        loop = DeployLoop(hand, bundle, loop_cfg, history=bundle.history, recorder=recorder, commands=commands,
                          rate_hz=bundle.rate_hz, action_scale=bundle.action_scale)   # from the manifest
        print(f"[deploy] {spec.kind} hand, bundle {bundle.path}, axis {loop.axis.round(3).tolist()}, "
              f"{loop_cfg.duration_s:g} s" + (f", commands on udp 127.0.0.1:{commands.port}" if hasattr(commands, "port") else ""))
        report = loop.run()
        metrics = hand.metrics() if hasattr(hand, "metrics") else {}
    finally:
        if writer is not None:
            writer.close()
        hand.close()
    out = {"reason": report.reason, "message": report.message, "ticks": report.ticks, "bus_errors": report.bus_errors,
           "motor": report.motor, "segments": report.segments, "axis_changes": report.axis_changes,
           "timing": report.timing, "hand": metrics, "record": rec.get("path") if writer is not None else None}
    t = report.timing
    print(f"[deploy] {report.reason}: {report.message}")
    if t:
        print(f"[deploy] tick p50 {t.get('total_p50_ms', 0):.2f} ms, p99 {t.get('total_p99_ms', 0):.2f} ms, "
              f"inference p99 {t.get('inference_p99_ms', 0):.2f} ms, overruns {t.get('overruns', 0)}")
    if out["record"]:
        report_path = Path(out["record"]).with_name("deploy.json")
        tmp = report_path.with_name(f".{report_path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(out, indent=1, default=str))
        os.replace(tmp, report_path)
    return out


def _run_and_print(cfg: DictConfig) -> None:
    out = run(cfg)
    if out["reason"] not in ("duration", "stop", "sigint", "estop"):
        raise SystemExit(1)


main = hydra_app("deploy", _run_and_print)


if __name__ == "__main__":
    main()
