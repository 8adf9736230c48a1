"""Learning-curve plots from metrics.csv."""

from __future__ import annotations

import pytest

from dexndm.eval.curves import main, read_metrics


def test_curves_from_csv(tmp_path):
    rows = ["iteration,frames,reward/mean,episode/ttf"] + [f"{i},{i * 1000},{-1 + i / 50},{'' if i % 3 else 0.5}"
                                                         for i in range(1, 60)]
    (tmp_path / "metrics.csv").write_text("\n".join(rows) + "\n")
    m = read_metrics(tmp_path)
    assert m["frames"][-1] == 59000 and m["episode/ttf"][2] == 0.5
    assert main([str(tmp_path), "--keys", "reward/mean,episode/ttf"]) == 0
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    with pytest.raises(ValueError, match="available"):
        main([str(tmp_path), "--keys", "nope"])
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        read_metrics(tmp_path / "missing")


def test_several_runs_are_overlaid_and_need_distinct_names(tmp_path):
    for name, slope in (("white", 50), ("ar09", 20)):
        rows = ["iteration,frames,episode/rot_r"] + [f"{i},{i * 1000},{i / slope}" for i in range(1, 40)]
        (tmp_path / f"{name}_metrics.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "only_a.csv").write_text("iteration,frames,episode/ttf\n1,1000,0.5\n2,2000,0.6\n")
    out = tmp_path / "compare.png"
    runs = [str(tmp_path / f) for f in ("white_metrics.csv", "ar09_metrics.csv", "only_a.csv")]
    assert main(runs + ["--keys", "episode/rot_r,episode/ttf", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "white_metrics.csv").write_text((tmp_path / "white_metrics.csv").read_text())
    with pytest.raises(SystemExit, match="same name"):
        main([str(tmp_path / "white_metrics.csv"), str(tmp_path / "b" / "white_metrics.csv")])
