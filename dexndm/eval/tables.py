"""The paper's result tables from an evaluation report (DexNDM Tables 1, 4 and 5).

* Table 1 ("Generalization Test in Simulation"): one row per method; for each axis group
  +-x, +-y, +-z and the general axes: RotR (up), TTF (up, normalised), RotP (down); then
  GO Succ. (%) from goal-oriented mode.  One table per (domain, object set, wrist).
* Table 4 ("Multi-Axis Rotation"): rows (object set, method); for +-x, +-y, +-z and the
  cubic-diagonal axes: Rot (rad) and TTF (s).  One table per (domain, wrist).
* Table 5 ("Multi-Wrist Orientation Rotation"): one row per method; for palm up/down,
  base up/down, thumb up/down: Rot (rad) and TTF (s).  One per (domain, object set, axes).

Cells are mean +- std over seeds (``dexndm.eval.rotation``); a condition that was not
evaluated shows "-".  ``write_report`` writes ``eval.md`` (every table plus a table of all
conditions), ``eval.csv`` (long form: one row per table cell) and ``eval.json`` (the
report with the tables), each atomically.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from dexndm.eval.rotation import METRICS
from dexndm.files import atomic_path

#: (metric, header label, scale) per table column; scale turns fractions into percent.
T1_METRICS = (("rot_r", "RotR ↑", 1.0), ("ttf", "TTF ↑", 1.0), ("rotp", "RotP ↓", 1.0))
T1_GROUPS = (("x", "±x-axis"), ("y", "±y-axis"), ("z", "±z-axis"), ("general", "General Rotation Axes"))
REAL_METRICS = (("rot_rad", "Rot (rad)", 1.0), ("ttf_s", "TTF (s)", 1.0))
T4_GROUPS = (("x", "±x-axis"), ("y", "±y-axis"), ("z", "±z-axis"), ("diagonal", "Cubic Diagonal Axes"))
T5_GROUPS = (("palm_up", "Palm Up"), ("palm_down", "Palm Down"), ("base_up", "Base Up"),
             ("base_down", "Base Down"), ("thumb_up", "Thumb Up"), ("thumb_down", "Thumb Down"))
TABLES: tuple[str, ...] = ("table1", "table4", "table5")
MISSING = "–"


@dataclass
class Table:
    """A paper table: ``columns`` [(group label, metric label)], ``rows`` [(row keys, cells)],
    a cell (mean, std) or None where the condition was not evaluated."""

    name: str
    title: str
    context: dict[str, str]
    row_header: list[str]
    columns: list[tuple[str, str]]
    rows: list[tuple[list[str], list[tuple[float, float] | None]]] = field(default_factory=list)

    def has_data(self) -> bool:
        return any(c is not None for _, cells in self.rows for c in cells)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "context": self.context, "row_header": self.row_header,
                "columns": [list(c) for c in self.columns],
                "rows": [{"keys": keys, "cells": [None if c is None else {"mean": c[0], "std": c[1]} for c in cells]}
                         for keys, cells in self.rows]}

    def markdown(self, digits: int = 2) -> str:
        header = self.row_header + [f"{g} {m}" if g else m for g, m in self.columns]
        lines = [f"**{self.title}** ({', '.join(f'{k}: {v}' for k, v in self.context.items())})", "",
                 "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for keys, cells in self.rows:
            text = [MISSING if c is None else f"{c[0]:.{digits}f} ± {c[1]:.{digits}f}" for c in cells]
            lines.append("| " + " | ".join(keys + text) + " |")
        return "\n".join(lines)


def _index(results: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str, str, str], Mapping[str, Any]]:
    return {(r["policy"], r["domain"], r["object_set"], r["axes"], r["wrist"]): r for r in results}


def _cell(row: Mapping[str, Any] | None, metric: str, scale: float) -> tuple[float, float] | None:
    if row is None:
        return None
    return float(row["mean"][metric]) * scale, float(row["std"][metric]) * scale


def _ordered(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def table1(report: Mapping[str, Any], domain: str, object_set: str, wrist: str) -> Table:
    idx = _index(report["results"])
    cols = [(g, m) for _, g in T1_GROUPS for _, m, _ in T1_METRICS] + [("", "GO Succ. (%)")]
    t = Table("table1", "Table 1: rotation performance per axis group",
              {"domain": domain, "object_set": object_set, "wrist": wrist}, ["Method"], cols)
    for policy in report["policies"]:
        cells = [_cell(idx.get((policy, domain, object_set, axes, wrist)), m, s)
                 for axes, _ in T1_GROUPS for m, _, s in T1_METRICS]
        cells.append(_cell(idx.get((policy, domain, object_set, "goal", wrist)), "go_success", 100.0))
        t.rows.append(([policy], cells))
    return t


def table4(report: Mapping[str, Any], domain: str, wrist: str) -> Table:
    idx = _index(report["results"])
    cols = [(g, m) for _, g in T4_GROUPS for _, m, _ in REAL_METRICS]
    t = Table("table4", "Table 4: multi-axis rotation", {"domain": domain, "wrist": wrist},
              ["Object Set", "Method"], cols)
    for obj in _ordered(r["object_set"] for r in report["results"]):
        for policy in report["policies"]:
            cells = [_cell(idx.get((policy, domain, obj, axes, wrist)), m, s)
                     for axes, _ in T4_GROUPS for m, _, s in REAL_METRICS]
            t.rows.append(([obj, policy], cells))
    return t


def table5(report: Mapping[str, Any], domain: str, object_set: str, axes: str = "z") -> Table:
    idx = _index(report["results"])
    cols = [(g, m) for _, g in T5_GROUPS for _, m, _ in REAL_METRICS]
    t = Table("table5", "Table 5: multi-wrist-orientation rotation",
              {"domain": domain, "object_set": object_set, "axes": axes}, ["Method"], cols)
    for policy in report["policies"]:
        cells = [_cell(idx.get((policy, domain, object_set, axes, wrist)), m, s)
                 for wrist, _ in T5_GROUPS for m, _, s in REAL_METRICS]
        t.rows.append(([policy], cells))
    return t


def conditions_table(report: Mapping[str, Any], metrics: Iterable[str] = ("rot_rad", "ttf", "ttf_s", "rot_r", "rotp",
                                                                            "survival_angle", "go_success")) -> Table:
    """Every (condition, policy) with the main metrics."""
    metrics = list(metrics)
    t = Table("conditions", "All conditions", {"seeds": str(report["config"].get("seeds"))},
              ["Domain", "Object Set", "Axes", "Wrist", "Method"], [("", m) for m in metrics])
    for r in report["results"]:
        t.rows.append(([r["domain"], r["object_set"], r["axes"], r["wrist"], r["policy"]],
                       [_cell(r, m, 1.0) for m in metrics]))
    return t


def build_tables(report: Mapping[str, Any], which: Iterable[str] | None = None) -> list[Table]:
    """The paper tables that have data, per domain (``which``: subset of TABLES; default the
    report's protocol, or all three without one)."""
    protocol = report.get("config", {}).get("protocol")
    which = list(which) if which is not None else ([protocol] if protocol in TABLES else list(TABLES))
    unknown = sorted(set(which) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown tables {unknown}; use any of {TABLES}")
    res = report["results"]
    out: list[Table] = []
    for domain in _ordered(r["domain"] for r in res):
        rows = [r for r in res if r["domain"] == domain]
        candidates: list[Table] = []
        if "table1" in which:
            for obj, wrist in _ordered((r["object_set"], r["wrist"]) for r in rows):
                candidates.append(table1(report, domain, obj, wrist))
        if "table4" in which:
            for wrist in _ordered(r["wrist"] for r in rows):
                candidates.append(table4(report, domain, wrist))
        if "table5" in which:
            for obj, axes in _ordered((r["object_set"], r["axes"]) for r in rows if r["axes"] != "goal"):
                candidates.append(table5(report, domain, obj, axes))
        out += [t for t in candidates if t.has_data()]
    return out


def csv_rows(tables: Iterable[Table]) -> list[list[Any]]:
    """Long form: one row per cell (table, context, row keys, column group, metric, mean, std)."""
    rows: list[list[Any]] = [["table", "context", "row", "column", "metric", "mean", "std"]]
    for t in tables:
        ctx = ";".join(f"{k}={v}" for k, v in t.context.items())
        for keys, cells in t.rows:
            for (group, metric), c in zip(t.columns, cells):
                if c is not None:
                    rows.append([t.name, ctx, "/".join(keys), group, metric, f"{c[0]:.6g}", f"{c[1]:.6g}"])
    return rows


def markdown(report: Mapping[str, Any], tables: list[Table]) -> str:
    cfg = report.get("config", {})
    lines = ["# Rotation evaluation", "",
             f"Policies: {', '.join(f'`{n}` = `{s}`' for n, s in cfg.get('policies', {}).items())}.  "
             f"Seeds {cfg.get('seeds')}, {cfg.get('episodes')} episodes per seed and condition; "
             "cells: mean ± std over seeds of per-seed, object-averaged means.  TTF ↑ in Table 1 is "
             "normalised by the episode length; TTF (s) in seconds.", ""]
    for t in [*tables, conditions_table(report)]:
        lines += [t.markdown(), ""]
    skipped = sorted({u for r in report.get("results", []) for u in r.get("ungraspable", [])})
    if skipped:
        lines += ["## Draws without a stable grasp (`env.ungraspable=skip`: replaced by other objects or scales)",
                  "", ", ".join(f"`{u}`" for u in skipped), ""]
    lines += ["## Overall (mean over conditions per seed)", "", "| Method | " + " | ".join(METRICS) + " |",
              "|---|" + "---|" * len(METRICS)]
    for name, ms in report.get("overall", {}).items():
        lines.append(f"| {name} | " + " | ".join(f"{ms[m]['mean']:.3f} ± {ms[m]['std']:.3f}" for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_report(report: Mapping[str, Any], out: str | os.PathLike, which: Iterable[str] | None = None,
                 name: str = "eval") -> dict[str, Path]:
    """Write ``<name>.md``, ``<name>.csv`` and ``<name>.json`` under ``out`` (atomically); return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = build_tables(report, which)
    paths = {ext: out / f"{name}.{ext}" for ext in ("md", "csv", "json")}
    buf = io.StringIO()
    csv.writer(buf).writerows(csv_rows(tables))
    _atomic_write(paths["csv"], buf.getvalue())
    _atomic_write(paths["json"], json.dumps({**report, "tables": [t.to_dict() for t in tables]}, indent=1))
    _atomic_write(paths["md"], markdown(report, tables))
    return paths
