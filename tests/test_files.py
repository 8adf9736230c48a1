"""dexndm.files: the one way files are written whole or not at all."""

from __future__ import annotations

import pytest

from dexndm.files import atomic_path
from dexndm.rl.checkpoint import load_checkpoint, save_checkpoint


def test_a_failed_write_leaves_the_old_file_whole_and_no_temporary(tmp_path):
    target = tmp_path / "curve.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="disk"):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp.suffix == ".csv" and tmp != target
            tmp.write_text("half of the ne")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.csv"]

    with atomic_path(tmp_path / "new" / "curve.csv") as tmp:   # creates the folder
        tmp.write_text("new\n")
    assert (tmp_path / "new" / "curve.csv").read_text() == "new\n"
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["curve.csv"]


def test_checkpoints_are_replaced_whole(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1})
    save_checkpoint(path, {"step": 2})
    with pytest.raises(TypeError):                 # refused before anything is written
        save_checkpoint(path, {"step": 3, "bad": {1.5: "float key"}})
    assert load_checkpoint(path)["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
