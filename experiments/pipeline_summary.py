"""One markdown table from several `dexndm pipeline` report directories (one row per run).

    PYTHONPATH=. python experiments/pipeline_summary.py outputs/pipe_combined outputs/pipe_latency ...
    PYTHONPATH=. python experiments/pipeline_summary.py experiments/pipeline_cylinders_tip/reports/*.json

Columns: target domain, fine-tuning data (Chaos Box episodes, + the number of ``finetune.extra_data`` files), radians rotated and TTF (mean +- std over seeds) of the base policy
in the source domain, direct transfer, DexNDM and the whole-hand variant, what the gap costs in radians, and the
paired difference DexNDM minus direct transfer in radians seed by seed (mean +- std, "*" where every seed agrees:
``dexndm.pipeline.report.paired_gains``, computed from ``per_seed`` so older reports get it too), the
tracking error the residuals' frozen models predict with the residual over without (``dexndm.pipeline.report``),
the residual's settings (res_weight, max_residual, history, horizon; 1 where a report predates them; "ref" where it
tracked a source-domain model, ``residual.reference``) and its mean |a_res|.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dexndm.pipeline.report import paired_gains

METHODS = ("source", "direct", "dexndm", "wholehand")


def cell(methods: dict, method: str, metric: str) -> str:
    v = methods.get(method, {}).get(metric)
    return "-" if v is None else f"{v['mean']:.2f} +- {v['std']:.2f}"


def row(report: dict) -> str:
    m, diag = report["methods"], report.get("diagnosis", {})
    gap = diag.get("gap", {}).get("rot_rad", {})
    track = diag.get("residual", {})
    extra = report["settings"].get("finetune", {}).get("extra_data") or []
    cells = [str(report["domain"]), str(report["settings"]["chaos_box"]["episodes"]) + (f" + {len(extra)} files" if extra else "")]
    cells += [f"{cell(m, k, 'rot_rad')} / {cell(m, k, 'ttf')}" for k in METHODS]
    cells.append("-" if not gap else f"{gap['cost']:+.2f}" + ("" if gap["cost_exceeds_spread"] else " (in spread)"))
    paired = paired_gains(report.get("per_seed", {})).get("dexndm", {}).get("rot_rad")
    cells.append("-" if not paired else f"{paired['mean']:+.2f} +- {paired['std']:.2f}" + ("*" if paired["every_seed"] else ""))
    cells.append(" / ".join(f"x{track[v]['track_ratio']:.2f}" if v in track else "-" for v in ("jointwise", "wholehand")))
    res = report["settings"]["residual"]
    cells.append(f"{res['res_weight']:g}, {res['max_residual']:g}, {res.get('history', 1)}, {res.get('horizon', 1)}"
                 + (" ref" if res.get("reference") else ""))
    cells.append(" / ".join(f"{track[v]['res_abs']:.3f}" if track.get(v, {}).get("res_abs") is not None else "-"
                            for v in ("jointwise", "wholehand")))
    return "| " + " | ".join(cells) + " |"


def main(dirs: list[str]) -> str:
    head = ("| target domain | fine-tuning data | source (rad / TTF) | direct | DexNDM | whole-hand | gap cost (rad) "
            "| DexNDM minus direct, paired (rad) "
            "| predicted tracking with / without residual (joint-wise / whole-hand) | residual (weight, max, history, horizon) "
            "| mean abs a_res (rad) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for d in map(Path, dirs):                       # a report directory or a report JSON file
        lines.append(row(json.loads((d / "report.json" if d.is_dir() else d).read_text())))
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
