"""Learning-curve plots from metrics.csv."""

from __future__ import annotations

import math

import pytest

from dexndm.eval.curves import append_rows, main, read_metrics, stitch, window_means
from dexndm.rl.checkpoint import save_checkpoint


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


def test_window_means_weight_episodes_by_count(tmp_path, capsys):
    # 4 rows of 1000 frames: window (0, 2000] holds rows 1-2, (2000, 4000] rows 3-4
    rows = ["iteration,frames,episode/count,episode/rot_r,reward/mean",
            "1,1000,3,10,1", "2,2000,1,50,3", "3,3000,0,,5", "4,4000,2,20,7"]
    (tmp_path / "metrics.csv").write_text("\n".join(rows) + "\n")
    m = read_metrics(tmp_path)
    table = window_means(m, ["episode/rot_r", "reward/mean", "policy/kl"], 2000)
    assert [(a, b) for a, b, _ in table] == [(0, 2000), (2000, 4000)]
    assert table[0][2]["episode/rot_r"] == (3 * 10 + 50) / 4        # by episodes, not rows (30)
    assert table[1][2]["episode/rot_r"] == 20                       # the row without episodes is skipped
    assert table[0][2]["reward/mean"] == 2 and table[1][2]["reward/mean"] == 6
    assert math.isnan(table[0][2]["policy/kl"])
    assert main([str(tmp_path), "--keys", "episode/rot_r", "--table", "0.002"]) == 0
    printed = capsys.readouterr().out
    assert "| 0-0.002 | " in printed and "| 20 |" in printed
    assert not (tmp_path / "curves.png").exists()                   # a table alone drops no plot beside the run
    assert main([str(tmp_path), "--keys", "episode/rot_r", "--table", "0.002", "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").is_file()


def _write_metrics(path, iterations, columns="iteration,frames,episode/rot_r"):
    rows = [columns] + [f"{i},{i * 1000},{i / 10}" + ",0" * (columns.count(",") - 2) for i in iterations]
    path.write_text("\n".join(rows) + "\n")


def test_append_to_carries_a_committed_curve_on_without_gaps_or_repeats(tmp_path):
    committed, resumed = tmp_path / "committed.csv", tmp_path / "run"
    resumed.mkdir()
    _write_metrics(committed, range(1, 6))
    _write_metrics(resumed / "metrics.csv", range(4, 10))  # the resumed run's CSV overlaps iterations 4-5
    assert main([str(resumed), "--append-to", str(committed), "--keys", "episode/rot_r"]) == 0
    assert read_metrics(committed)["iteration"] == [float(i) for i in range(1, 10)]
    assert (tmp_path / "curves.png").is_file()
    assert append_rows(resumed, committed) == 0  # nothing past iteration 9

    _write_metrics(resumed / "metrics.csv", range(11, 14))  # a gap: iteration 10 is missing
    before = committed.read_bytes()
    with pytest.raises(ValueError, match="after 9 is 11"):
        append_rows(resumed, committed)
    _write_metrics(resumed / "metrics.csv", range(10, 14), columns="iteration,frames,episode/rot_r,extra")
    with pytest.raises(ValueError, match="extra"):
        append_rows(resumed, committed)
    assert committed.read_bytes() == before  # a refused append leaves the committed curve as it was


def test_append_to_stops_at_the_runs_last_checkpoint(tmp_path):
    # a run killed at iteration 12 after checkpointing at 10 re-runs 11-12 when it resumes:
    # the committed curve must not take the rows the resume will replace
    committed, run = tmp_path / "committed.csv", tmp_path / "run"
    run.mkdir()
    _write_metrics(committed, range(1, 6))
    _write_metrics(run / "metrics.csv", range(1, 13))
    save_checkpoint(run / "checkpoints" / "last.pt", {"counters": {"iteration": 10, "frames": 10_000}})
    assert append_rows(run, committed) == 5
    assert read_metrics(committed)["iteration"][-1] == 10.0
    assert append_rows(run / "metrics.csv", committed) == 2  # a bare CSV has no checkpoint to stop at
    fresh = tmp_path / "new" / "metrics.csv"
    fresh.parent.mkdir()
    assert append_rows(run, fresh) == 10                      # a new curve: iterations 1-10
    assert read_metrics(fresh)["iteration"] == [float(i) for i in range(1, 11)]


def test_stitch_draws_a_warm_started_run_after_its_parent_up_to_the_branch():
    parent = {"iteration": [1.0, 2.0, 3.0], "frames": [100.0, 200.0, 300.0], "episode/rot_r": [1.0, 2.0, 3.0]}
    child = {"iteration": [1.0, 2.0], "frames": [100.0, 200.0], "episode/rot_r": [5.0, 6.0], "extra": [7.0, 8.0]}
    lineage = stitch([(parent, 200.0), (child, None)])
    assert lineage["frames"] == [100.0, 200.0, 300.0, 400.0]       # the parent's row at 300 came after the branch
    assert lineage["iteration"] == [1.0, 2.0, 3.0, 4.0]
    assert lineage["episode/rot_r"] == [1.0, 2.0, 5.0, 6.0]
    assert math.isnan(lineage["extra"][0]) and lineage["extra"][2:] == [7.0, 8.0]
    with pytest.raises(ValueError, match="no row ends at 250"):
        stitch([(parent, 250.0), (child, None)])                   # not a checkpoint of the parent
    with pytest.raises(ValueError, match="branched at"):
        stitch([(parent, None), (child, None)])


def test_oracle_goal_curves_script_finds_every_committed_curve():
    from tests.conftest import experiment_script

    script = experiment_script("oracle_goal_curves")
    curves = script.lineage_curves()
    assert set(curves) == set(script.LINEAGES)
    for goal, metrics in curves.items():
        frames = metrics["frames"]
        assert all(b > a for a, b in zip(frames, frames[1:])), goal   # one increasing lineage axis
        means = script.trailing_means(metrics, ["episode/rot_r", "episode/ttf"], 2e6)
        assert 0.0 <= means["episode/ttf"] <= 1.0
