"""Stage bookkeeping for ``dexndm pipeline``: each stage's outputs are cached and reused.

A stage writes its outputs under ``<out_dir>/<stage>/`` and, last, ``stage.json``
(what it was given, what it produced, when, how long).  A later run skips a stage whose
``stage.json`` exists and whose recorded inputs equal the current ones; a changed input
(another checkpoint, another domain, more episodes) reruns it, and so does ``force``.
A stage's inputs also record which run of each earlier stage it read (``upstream``: that
stage's ``run_id``), so a stage whose upstream reran reruns too, even where the upstream
rewrote its outputs under the same file names.
Because ``stage.json`` is written only after the outputs (atomically), an interrupted
stage has none and reruns; stages that write HDF5 continue their files.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dexndm.files import atomic_path

MARKER = "stage.json"


class _Reads(dict):
    """The earlier stages' results, recording which of them a stage's ``inputs`` function reads."""

    def __init__(self, results: dict):
        super().__init__(results)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        self.read.add(name)
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        return super().get(name, default)


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write (temp file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


@dataclass
class Stage:
    """One step of the pipeline: ``fn(stage_dir, inputs) -> outputs`` (plain JSON data)."""

    name: str
    fn: Callable[[Path, dict], dict]
    inputs: Callable[[dict], dict]       # results of earlier stages -> this stage's inputs
    help: str = ""


@dataclass
class StageRunner:
    """Runs stages in order with caching; ``results[name]`` holds each stage's outputs."""

    out_dir: Path
    force: set[str] = field(default_factory=set)
    log: Callable[[str], None] = print
    results: dict[str, dict] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    run_ids: dict[str, str] = field(default_factory=dict)   # stage -> the run of it whose results are used

    def cached(self, stage: Stage, inputs: dict) -> dict | None:
        marker = self.out_dir / stage.name / MARKER
        if stage.name in self.force or "all" in self.force or not marker.exists():
            return None
        try:
            record = json.loads(marker.read_text())
        except (OSError, ValueError):
            return None
        if record.get("inputs") != json.loads(json.dumps(inputs, sort_keys=True, default=str)):
            self.log(f"[pipeline] {stage.name}: inputs changed since the cached run, rerunning")
            return None
        self.run_ids[stage.name] = str(record.get("run_id", record.get("finished")))
        return record["outputs"]

    def run(self, stage: Stage) -> dict:
        reads = _Reads(self.results)
        inputs = stage.inputs(reads)
        upstream = {name: self.run_ids[name] for name in sorted(reads.read) if name in self.run_ids}
        if upstream:
            inputs = {**inputs, "upstream": upstream}
        hit = self.cached(stage, inputs)
        if hit is not None:
            self.log(f"[pipeline] {stage.name}: cached ({self.out_dir / stage.name})")
            self.results[stage.name] = hit
            self.timings[stage.name] = 0.0
            return hit
        stage_dir = self.out_dir / stage.name
        stage_dir.mkdir(parents=True, exist_ok=True)
        (stage_dir / MARKER).unlink(missing_ok=True)
        self.log(f"[pipeline] {stage.name}: {stage.help}")
        t0 = time.perf_counter()
        outputs = stage.fn(stage_dir, inputs)
        elapsed = time.perf_counter() - t0
        run_id = uuid.uuid4().hex
        write_json(stage_dir / MARKER, {"inputs": inputs, "outputs": outputs, "seconds": elapsed, "run_id": run_id,
                                        "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
        self.run_ids[stage.name] = run_id
        self.log(f"[pipeline] {stage.name}: done in {elapsed:.0f} s")
        self.results[stage.name] = outputs
        self.timings[stage.name] = elapsed
        return outputs
