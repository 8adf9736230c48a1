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
