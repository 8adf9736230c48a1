"""The paper's table layouts (DexNDM Tables 1, 4, 5) and the `dexndm eval` app."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from dexndm.conf import register
from dexndm.eval import tables as T
from dexndm.eval.rotation import METRICS

CONF = str(Path(__file__).resolve().parents[1] / "dexndm/conf")


def _row(policy, object_set, axes, wrist, value, domain="nominal"):
    """A result row whose every metric mean is ``value`` and std ``value / 10``."""
    return {"policy": policy, "domain": domain, "object_set": object_set, "axes": axes, "wrist": wrist,
            "mean": {m: value for m in METRICS}, "std": {m: value / 10 for m in METRICS},
            "per_seed": {"0": {m: value for m in METRICS}}}


def _report(results, protocol=None):
    names = list(dict.fromkeys(r["policy"] for r in results))
    return {"config": {"protocol": protocol, "seeds": [0], "policies": {n: "zero" for n in names}, "episodes": 1},
            "policies": {n: {} for n in names}, "results": results, "overall": {}}


def test_table1_layout():
    rows = [_row(p, "unseen", a, "random", v + (10 if p == "dexndm" else 0))
            for p in ("direct", "dexndm") for v, a in enumerate(("x", "y", "z", "general"), start=1)]
    rows.append(_row("dexndm", "unseen", "goal", "random", 0.88))
    t = T.table1(_report(rows, "table1"), "nominal", "unseen", "random")
    assert t.row_header == ["Method"]
    assert t.columns == [(g, m) for g in ("±x-axis", "±y-axis", "±z-axis", "General Rotation Axes")
                         for m in ("RotR ↑", "TTF ↑", "RotP ↓")] + [("", "GO Succ. (%)")]
    assert [keys for keys, _ in t.rows] == [["direct"], ["dexndm"]]
    direct, dexndm = (cells for _, cells in t.rows)
    assert direct[0] == (1.0, 0.1) and direct[9] == (4.0, 0.4) and direct[12] is None   # no goal run for direct
    assert dexndm[3] == (12.0, 1.2) and dexndm[12] == pytest.approx((88.0, 8.8))       # GO Succ. in percent
    md = t.markdown()
    assert "| direct | 1.00 ± 0.10 |" in md and md.rstrip().endswith("| 88.00 ± 8.80 |")
    assert md.count("–") == 1


def test_table4_layout_rows_by_object_set_then_method():
    rows = [_row(p, o, a, "palm_down", 1.0) for o in ("cylinders", "small_cylinders")
            for p in ("direct", "wholehand", "dexndm") for a in ("x", "y", "z", "diagonal")]
    rows.append(_row("direct", "cylinders", "z", "palm_up", 5.0))          # another wrist: not in this table
    t = T.table4(_report(rows), "nominal", "palm_down")
    assert t.row_header == ["Object Set", "Method"]
    assert t.columns == [(g, m) for g in ("±x-axis", "±y-axis", "±z-axis", "Cubic Diagonal Axes")
                         for m in ("Rot (rad)", "TTF (s)")]
    assert [keys for keys, _ in t.rows] == [[o, p] for o in ("cylinders", "small_cylinders")
                                            for p in ("direct", "wholehand", "dexndm")]
    assert all(c == (1.0, 0.1) for _, cells in t.rows for c in cells)


def test_table5_layout_and_metrics():
    wrists = ("palm_up", "palm_down", "base_up", "base_down", "thumb_up", "thumb_down")
    rows = [_row(p, "cylinders", "z", w, k + 1.0) for p in ("direct", "dexndm") for k, w in enumerate(wrists)]
    rows[0]["mean"]["rot_rad"], rows[0]["mean"]["ttf_s"] = 10.03, 25.63
    t = T.table5(_report(rows), "nominal", "cylinders", "z")
    assert [g for g, _ in t.columns[::2]] == ["Palm Up", "Palm Down", "Base Up", "Base Down", "Thumb Up", "Thumb Down"]
    assert [m for _, m in t.columns[:2]] == ["Rot (rad)", "TTF (s)"]
    assert t.rows[0][1][0][0] == 10.03 and t.rows[0][1][1][0] == 25.63     # Rot = rot_rad, TTF (s) = ttf_s
    assert t.rows[1][1][-1] == (6.0, 0.6)


def test_build_tables_follows_the_protocol_and_domains():
    rows = [_row("p", "cylinders", a, "palm_down", 1.0, domain=d) for d in ("nominal", "latency")
            for a in ("x", "z", "goal")]
    names = [(t.name, t.context["domain"], t.context.get("axes")) for t in T.build_tables(_report(rows))]
    assert names == [(name, d, axes) for d in ("nominal", "latency")          # no Table 5 of goal mode
                     for name, axes in (("table1", None), ("table4", None), ("table5", "x"), ("table5", "z"))]
    assert [t.name for t in T.build_tables(_report(rows, "table4"))] == ["table4", "table4"]
    with pytest.raises(ValueError, match="unknown tables"):
        T.build_tables(_report(rows), ["table2"])


def test_write_report_files(tmp_path):
    rows = [_row(p, "cylinders", a, "palm_down", 2.0) for p in ("a", "b") for a in ("x", "y", "z", "diagonal")]
    paths = T.write_report(_report(rows, "table4"), tmp_path)
    assert sorted(p.name for p in paths.values()) == ["eval.csv", "eval.json", "eval.md"]
    with open(paths["csv"]) as fh:
        data = list(csv.reader(fh))
    assert data[0] == ["table", "context", "row", "column", "metric", "mean", "std"]
    assert len(data) == 1 + 2 * 4 * 2 and data[1][:5] == ["table4", "domain=nominal;wrist=palm_down", "cylinders/a",
                                                          "±x-axis", "Rot (rad)"]
    saved = json.loads(paths["json"].read_text())
    assert saved["tables"][0]["name"] == "table4" and len(saved["results"]) == 8
    assert "Table 4" in paths["md"].read_text()
    assert not list(tmp_path.glob(".*tmp"))


def test_markdown_lists_the_draws_skipped_for_want_of_a_grasp():
    rows = [_row(p, "unseen", "z", "palm_up", 1.0) for p in ("a", "b")]
    assert "without a stable grasp" not in T.markdown(_report(rows), [])
    rows[0]["ungraspable"] = rows[1]["ungraspable"] = ["unseen/25_mushroom@0.500/palm_up"]
    md = T.markdown(_report(rows), [])
    assert md.count("`unseen/25_mushroom@0.500/palm_up`") == 1 and "without a stable grasp" in md


def _cfg(overrides):
    register()
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose("eval", overrides=overrides)


def test_app_run_writes_the_report(tmp_path, tiny_env_cfg):
    from dexndm.apps.eval import run

    cfg = _cfg(["protocol=null", "object_sets=[cuboids]", "axes=[+z,goal]", "wrists=[palm_up]", "seeds=[0,1]",
                "episodes=2", "num_envs=2", "env.episode_steps=6", f"env.grasp_dir={tiny_env_cfg['grasp_dir']}",
                "env.object_names=[cuboids/00]", "env.randomization.scale_bins=1", "env.grasp.candidates=32",
                "progress=false", f"out_dir={tmp_path}", "policies={hold:zero}"])
    report = run(cfg)
    assert [r["policy"] for r in report["results"]] == ["hold", "hold"]
    assert {r["axes"] for r in report["results"]} == {"+z", "goal"}
    assert report["results"][0]["mean"]["ttf"] == 1.0              # palm up, holding: nothing falls in 6 steps
    for ext in ("md", "csv", "json"):
        assert (tmp_path / f"eval.{ext}").is_file()
    with pytest.raises(ValueError, match="set per condition"):
        run(_cfg(["env.wrist=palm_down", f"out_dir={tmp_path}"]))
