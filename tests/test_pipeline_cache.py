"""Pipeline stage caching: a finished stage is reused, a changed input or force reruns it,
and an interrupted stage (no marker) reruns."""

import json
from pathlib import Path

import pytest

from dexndm.pipeline.cache import MARKER, Stage, StageRunner


def _counting_stage(calls: list, value: dict):
    def fn(stage_dir, inputs):
        calls.append(dict(inputs))
        (stage_dir / "out.txt").write_text(json.dumps(inputs))
        return {"out": str(stage_dir / "out.txt"), "n": len(calls)}
    return Stage("a", fn, lambda results: dict(value), "test stage")


def test_cached_stage_is_skipped_until_inputs_change_or_forced(tmp_path):
    calls: list = []
    inputs = {"episodes": 4}
    stage = _counting_stage(calls, inputs)
    first = StageRunner(tmp_path, log=lambda m: None).run(stage)
    again = StageRunner(tmp_path, log=lambda m: None).run(stage)
    assert len(calls) == 1 and again == first
    inputs["episodes"] = 8
    StageRunner(tmp_path, log=lambda m: None).run(_counting_stage(calls, inputs))
    assert len(calls) == 2
    StageRunner(tmp_path, force={"a"}, log=lambda m: None).run(_counting_stage(calls, inputs))
    assert len(calls) == 3


def test_interrupted_stage_leaves_no_marker_and_reruns(tmp_path):
    def boom(stage_dir, inputs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        StageRunner(tmp_path, log=lambda m: None).run(Stage("a", boom, lambda r: {}, ""))
    assert not (tmp_path / "a" / MARKER).exists()
    calls: list = []
    StageRunner(tmp_path, log=lambda m: None).run(_counting_stage(calls, {}))
    assert len(calls) == 1 and (tmp_path / "a" / MARKER).exists()


def test_a_stage_reruns_when_a_stage_it_reads_reran_under_the_same_file_names(tmp_path):
    """b reads a's output path; forcing a rewrites that same file, so b must not reuse its cached result."""
    runs: list = []

    def a(stage_dir, inputs):
        (stage_dir / "data.txt").write_text(str(len(runs)))
        runs.append("a")
        return {"out": str(stage_dir / "data.txt")}

    def b(stage_dir, inputs):
        runs.append("b")
        return {"saw": Path(inputs["data"]).read_text()}

    stages = [Stage("a", a, lambda r: {}), Stage("b", b, lambda r: {"data": r["a"]["out"]}),
              Stage("c", lambda d, i: runs.append("c") or {}, lambda r: {"k": 1})]      # c reads no stage

    def pipeline(force=()):
        runner = StageRunner(tmp_path, force=set(force), log=lambda m: None)
        return [runner.run(s) for s in stages]

    first = pipeline()
    assert runs == ["a", "b", "c"] and first[1] == {"saw": "0"}
    assert pipeline() == first and runs == ["a", "b", "c"]                    # all cached
    again = pipeline(force=["a"])
    assert runs == ["a", "b", "c", "a", "b"] and again[1] == {"saw": "3"}     # b reran on a's new data, c did not
    assert pipeline() == again and len(runs) == 5
