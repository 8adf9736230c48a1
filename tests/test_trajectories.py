"""Trajectory datasets: round trip, crash safety (SIGKILL, journal), resume rules, validation, merge, CLI.

Every file is built here from synthetic trajectories (dexndm.data.synthetic); nothing
is downloaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from dexndm.data import SchemaError, TrajectoryError, TrajectoryFile, TrajectoryWriter, info, journal, merge, validate
from dexndm.data import schema as S
from dexndm.data.cli import main as data_main
from dexndm.data.journal import JournaledFile, JournalView, journal_path, read_journal
from dexndm.data.synthetic import random_trajectory, write_random_file
from dexndm.hand import constants as hc
from dexndm.sim.domain import load_domain
from dexndm.sim.observations import ObsLayout

ROOT = Path(__file__).resolve().parents[1]
SOURCE = {"kind": "policy", "checkpoint_sha256": "ab" * 32}


@pytest.fixture(scope="module")
def domain() -> dict:
    return load_domain("nominal").to_dict()


def _writer(path, domain, **kw) -> TrajectoryWriter:
    kw.setdefault("source", SOURCE)
    kw.setdefault("config", {"task": "cuboids", "seed": 0})
    kw.setdefault("fsync", False)
    return TrajectoryWriter(path, domain=domain, **kw)


def _assert_same(read: dict, written: dict) -> None:
    """A trajectory read back equals what was appended (float32 exactly)."""
    assert set(read) == set(written) | {"length"}
    for key, value in written.items():
        if isinstance(value, np.ndarray):
            assert read[key].dtype == np.float32 and np.array_equal(read[key], value), key
        else:
            assert read[key] == value, key


@pytest.fixture
def valid_file(tmp_path, domain) -> Path:
    """Two trajectories with every optional field (T = 12 and 15)."""
    path = tmp_path / "valid.h5"
    with _writer(path, domain) as w:
        w.append(random_trajectory(0, 12))
        w.append(random_trajectory(1, 15))
    return path


def test_round_trip_is_exact(tmp_path, domain):
    path = tmp_path / "rt.h5"
    trajs = [random_trajectory(0, 10), random_trajectory(1, 7, optional=False), random_trajectory(2, 13)]
    with _writer(path, domain) as w:
        assert [w.append(t) for t in trajs] == [0, 1, 2]
    with TrajectoryFile(path) as f:
        assert f.indices == [0, 1, 2] and len(f) == 3
        meta = f.meta
        assert meta["schema_version"] == S.SCHEMA_VERSION and meta["joint_order"] == list(hc.JOINT_NAMES)
        assert meta["domain"] == json.loads(json.dumps(domain)) and meta["source"] == SOURCE
        assert meta["config"] == {"task": "cuboids", "seed": 0} and meta["control_rate_hz"] == 20.0
        for i, t in enumerate(trajs):
            _assert_same(f.load(i), t)
        assert "action" not in f.load(1) and f.load(1)["length"] == 7
        # load_all concatenates per-step fields; the offsets find each trajectory again.
        data = f.load_all(["q", "target", "axis", "success"])
        assert data["q"].shape == (10 + 7 + 13 + 3, 16) and data["target"].shape == (30, 16)
        for n, t in enumerate(trajs):
            s0, s1 = data["step_offsets"][n:n + 2]
            q0, q1 = data["state_offsets"][n:n + 2]
            assert np.array_equal(data["target"][s0:s1], t["target"]) and np.array_equal(data["q"][q0:q1], t["q"])
            assert np.array_equal(data["axis"][n], t["axis"]) and data["success"][n] == t["success"]
        with pytest.raises(KeyError, match="action"):
            f.load_all(["action"])              # trajectory 1 has none: refuse, never a ragged result


def test_privileged_layout_is_recorded_and_enforced(tmp_path, domain):
    layout = ObsLayout("test", (("joint_pos", 5), ("axis", 3)))     # P = 8 = synthetic width
    path = tmp_path / "layout.h5"
    with _writer(path, domain, privileged_layout=layout.to_dict()) as w:
        w.append(random_trajectory(0, 6))
        narrow = random_trajectory(1, 6)
        narrow["privileged_obs"] = narrow["privileged_obs"][:, :5]
        with pytest.raises(TrajectoryError, match=r"privileged_obs.*\(6, 8\).*width differs"):
            w.append(narrow)
    with TrajectoryFile(path) as f:
        assert ObsLayout.from_dict(f.meta["privileged_layout"]) == layout
    with pytest.raises(SchemaError, match="privileged_layout"):
        _writer(path, domain, privileged_layout=ObsLayout("test", (("joint_pos", 8),)).to_dict())


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.update(q=t["q"][:, :15]), "q"),
    (lambda t: t["target"].__setitem__((2, 3), np.nan), "target"),
    (lambda t: t.update(q=t["q"][:-1]), "q"),
    (lambda t: t.update(axis=np.ones(4)), "axis"),
    (lambda t: t.update(foo=1), "foo"),
    (lambda t: t.pop("success"), "success"),
    (lambda t: t.update(privileged_obs=t["privileged_obs"][:, :5]), "privileged_obs"),
    (lambda t: t.update(length=3), "length"),
])
def test_append_rejects_a_bad_trajectory_before_writing(valid_file, domain, edit, field):
    size = valid_file.stat().st_size
    traj = random_trajectory(5, 9)
    edit(traj)
    with _writer(valid_file, domain) as w:
        with pytest.raises(TrajectoryError) as err:
            w.append(traj)
        assert err.value.field == field and field in str(err.value)
        assert w.next_index == 2
    with h5py.File(valid_file, "r") as f:
        assert sorted(f["traj"]) == ["00000000", "00000001"]
    assert valid_file.stat().st_size == size


def test_an_append_that_fails_midway_leaves_no_group(valid_file, domain, monkeypatch):
    real, calls = h5py.Group.create_dataset, []

    def failing(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise OSError("No space left on device (simulated)")
        return real(self, *args, **kwargs)

    with _writer(valid_file, domain) as w:
        monkeypatch.setattr(h5py.Group, "create_dataset", failing)
        with pytest.raises(OSError, match="simulated"):
            w.append(random_trajectory(7, 9))
        monkeypatch.setattr(h5py.Group, "create_dataset", real)
        assert w.append(random_trajectory(2, 5)) == 2
    with TrajectoryFile(valid_file) as f:
        assert f.indices == [0, 1, 2]
        _assert_same(f.load(2), random_trajectory(2, 5))
    assert validate(valid_file) == []


CHILD = textwrap.dedent("""
    import sys, time
    from dexndm.data import TrajectoryWriter
    from dexndm.data.synthetic import random_trajectory
    with TrajectoryWriter(sys.argv[1], domain={"name": "nominal"}, source={"kind": "test"}, config={}) as w:
        while True:
            i = w.next_index
            w.append(random_trajectory(i, 5 + i % 7))
            print(i, flush=True)
            time.sleep(0.005)
""")


def _run_and_kill(path: Path, until: int) -> None:
    """Start a writer process on ``path``; SIGKILL it once it reported trajectory ``until``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        deadline = time.monotonic() + 30
        while int(proc.stdout.readline() or -1) < until:
            assert proc.poll() is None and time.monotonic() < deadline, "writer process died or stalled"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _check_intact(path: Path, at_least: int) -> int:
    """Validate, and every trajectory equals the one its index seeds; return the count."""
    assert validate(path) == []
    with TrajectoryFile(path) as f:
        n = len(f)
        assert n >= at_least and f.indices == list(range(n))
        for i in f.indices:
            _assert_same(f.load(i), random_trajectory(i, 5 + i % 7))
    return n


def test_sigkill_leaves_every_finished_trajectory_and_resume_continues(tmp_path):
    path = tmp_path / "killed.h5"
    _run_and_kill(path, until=4)                # >= 5 trajectories written; killed at a random moment
    n = _check_intact(path, 5)
    _run_and_kill(path, until=n + 3)            # a second writer resumes the file, is killed again
    m = _check_intact(path, n + 4)
    with TrajectoryWriter(path, domain={"name": "nominal"}, source={"kind": "test"}, config={}) as w:
        assert w.next_index == m and len(w) == m
        for _ in range(2):
            w.append(random_trajectory(w.next_index, 5 + w.next_index % 7))
    assert _check_intact(path, m + 2) == m + 2
    assert not journal_path(path).exists()


# Kill the writer at each step of a commit (dexndm.data.journal): the file must read either
# as before the commit or as after it, never in between.
CRASH_CHILD = textwrap.dedent("""
    import os, signal, sys
    from dexndm.data import TrajectoryWriter, journal
    from dexndm.data.synthetic import random_trajectory
    point, armed, seen = sys.argv[2], [False], {"journal": 0, "main_after_journal": 0}
    real = journal._pwrite_all
    def hooked(fd, data, offset):
        if armed[0]:
            to_journal = os.readlink(f"/proc/self/fd/{fd}").endswith("-journal")
            if to_journal and point == "before_journal":
                os.kill(os.getpid(), signal.SIGKILL)
            if to_journal and point == "torn_journal":
                real(fd, bytes(data)[: len(data) // 2], offset)
                os.kill(os.getpid(), signal.SIGKILL)
            seen["journal"] += to_journal
            if not to_journal and seen["journal"]:
                seen["main_after_journal"] += 1
                if point == "after_journal" or (point == "mid_inplace" and seen["main_after_journal"] == 2):
                    os.kill(os.getpid(), signal.SIGKILL)
        real(fd, data, offset)
    journal._pwrite_all = hooked
    with TrajectoryWriter(sys.argv[1], domain={"name": "nominal"}, source={"kind": "test"}, config={}) as w:
        for i in range(2):
            w.append(random_trajectory(i, 5 + i % 7))
        armed[0] = True
        w.append(random_trajectory(2, 7))
""")


@pytest.mark.parametrize("point, expected", [
    ("before_journal", 2), ("torn_journal", 2), ("after_journal", 3), ("mid_inplace", 3)])
def test_a_kill_inside_a_commit_leaves_the_state_before_or_after_it(tmp_path, point, expected):
    path = tmp_path / "crash.h5"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", CRASH_CHILD, str(path), point], env=env, timeout=60)
    assert proc.returncode == -signal.SIGKILL          # it died where the hook says
    assert _check_intact(path, expected) == expected   # readers see a whole commit (journal replayed virtually)
    with TrajectoryWriter(path, domain={"name": "nominal"}, source={"kind": "test"}, config={}) as w:
        assert w.next_index == expected                # the writer replays the journal into the file
        w.append(random_trajectory(expected, 5 + expected % 7))
    assert _check_intact(path, expected + 1) == expected + 1
    assert not journal_path(path).exists()


def test_journaled_file_reads_and_commits_like_a_plain_file(tmp_path):
    """Random writes, truncations and flushes against a bytearray model of the file."""
    rng = np.random.default_rng(0)
    path = tmp_path / "j.bin"
    path.write_bytes(rng.integers(0, 256, 10_000, dtype=np.uint8).tobytes())
    model = bytearray(path.read_bytes())
    jf = JournaledFile(path, fsync=False)
    for _ in range(1000):
        op = rng.integers(5)
        if op < 2:
            at = int(rng.integers(0, len(model) + 5000)) // (4096 if op else 1) * (4096 if op else 1)
            data = rng.integers(0, 256, int(rng.integers(1, 9000)), dtype=np.uint8).tobytes()
            model.extend(bytes(max(0, at + len(data) - len(model))))
            model[at:at + len(data)] = data
            jf.seek(at)
            jf.write(data)
        elif op == 2:
            size = int(rng.integers(0, len(model) + 3000))
            model = model[:size] + bytearray(max(0, size - len(model)))
            jf.truncate(size)
        elif op == 3:
            jf.flush()
            assert path.read_bytes() == model and read_journal(path) is None
        at = int(rng.integers(0, len(model) + 1))
        n = int(rng.integers(0, len(model) - at + 1))
        jf.seek(at)
        assert jf.read(n) == model[at:at + n] and jf.seek(0, os.SEEK_END) == len(model)
    jf.close()
    assert path.read_bytes() == model and not journal_path(path).exists()


class _Crash(Exception):
    pass


def test_a_commit_cut_at_any_write_reads_as_before_or_after_it(tmp_path, monkeypatch):
    """Crash a JournaledFile commit at its k-th write (sometimes tearing that write)."""
    rng = np.random.default_rng(1)
    path = tmp_path / "c.bin"
    path.write_bytes(rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    real, outcomes = journal._pwrite_all, []
    for _ in range(60):
        before = path.read_bytes()
        jf = JournaledFile(path, fsync=False)
        after = bytearray(before)
        for _ in range(int(rng.integers(1, 6))):
            if rng.random() < 0.75:
                at = int(rng.integers(0, len(after) + 6000))
                data = rng.integers(0, 256, int(rng.integers(1, 10_000)), dtype=np.uint8).tobytes()
                after.extend(bytes(max(0, at + len(data) - len(after))))
                after[at:at + len(data)] = data
                jf.seek(at)
                jf.write(data)
            else:
                size = int(rng.integers(0, len(after) + 3000))
                after = after[:size] + bytearray(max(0, size - len(after)))
                jf.truncate(size)
        # where to crash: the n-th write to the journal, or the n-th to the file before/after it
        kind = ("file_before", "journal", "file_after")[int(rng.integers(3))]
        n, torn, calls = int(rng.integers(1, 3)), bool(rng.random() < 0.5), {"file_before": 0, "journal": 0,
                                                                               "file_after": 0}

        def hooked(fd, data, offset):
            this = "journal" if fd == jf._jfd else "file_after" if calls["journal"] else "file_before"
            calls[this] += 1
            if this == kind and calls[this] == n:
                if torn:
                    real(fd, bytes(data)[: len(data) // 2], offset)
                raise _Crash
            real(fd, data, offset)

        monkeypatch.setattr(journal, "_pwrite_all", hooked)
        with contextlib.suppress(_Crash):
            jf.flush()
        monkeypatch.setattr(journal, "_pwrite_all", real)
        os.close(jf._fd)                        # abandoned like a killed process: no close()
        if jf._jfd >= 0:
            os.close(jf._jfd)
        whole = read_journal(path)
        if whole is not None:                   # a reader sees the new state through the journal
            view = JournalView(path, whole, locking=False)
            assert view.read() == after
            view.close()
            outcomes.append("after")
        else:                                   # or the old one (the file may be longer: unused tail)
            on_disk = path.read_bytes()
            assert on_disk[:len(before)] == before or on_disk == after
            outcomes.append("before" if on_disk[:len(before)] == before and on_disk != after else "after")
        JournaledFile(path, fsync=False).close()     # the next writer replays the journal
        if whole is not None:
            assert path.read_bytes() == after
    assert {"before", "after"} <= set(outcomes)


def test_resume_refuses_another_domain_source_or_rate_and_leaves_the_file_untouched(valid_file, domain):
    before = valid_file.read_bytes()
    with pytest.raises(SchemaError, match=r"its domain differs .*another output path"):
        _writer(valid_file, load_domain("combined").to_dict())
    with pytest.raises(SchemaError, match=r"its source differs .*checkpoint_sha256"):
        _writer(valid_file, domain, source={"kind": "policy", "checkpoint_sha256": "cd" * 32})
    with pytest.raises(SchemaError, match="control_rate_hz"):
        _writer(valid_file, domain, control_rate_hz=30.0)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        _writer(valid_file, domain, resume=False)
    assert valid_file.read_bytes() == before
    with _writer(valid_file, domain) as w:               # the same run resumes and numbers on
        assert w.append(random_trajectory(2, 5)) == 2
    assert TrajectoryFile(valid_file).indices == [0, 1, 2]


def test_incomplete_group_is_ignored_then_replaced_on_resume(valid_file, domain):
    with h5py.File(valid_file, "r+") as f:              # what an append that raised half-way leaves
        f["traj"].create_group("00000002").create_dataset("q", data=np.zeros((3, 16), np.float32))
    with TrajectoryFile(valid_file) as f:
        assert f.indices == [0, 1]
    assert validate(valid_file) == [] and info(valid_file)["incomplete_groups"] == 1
    with _writer(valid_file, domain) as w:
        assert w.next_index == 2
        w.append(random_trajectory(2, 6))
    with TrajectoryFile(valid_file) as f:
        assert f.indices == [0, 1, 2]
        _assert_same(f.load(2), random_trajectory(2, 6))


def _set(name, index, value):
    def edit(f):
        f[f"traj/{S.group_name(1)}/{name}"][index] = value
    return edit


def _replace(name, shape):
    def edit(f):
        g = f[f"traj/{S.group_name(1)}"]
        del g[name]
        g[name] = np.zeros(shape, np.float32)
    return edit


def _root(name, value):
    def edit(f):
        f.attrs[name] = value
    return edit


SWAPPED = np.array([hc.JOINT_NAMES[1], hc.JOINT_NAMES[0], *hc.JOINT_NAMES[2:]], dtype=h5py.string_dtype())
T1 = 15     # length of trajectory 1 in valid_file


@pytest.mark.parametrize("edit, index, field, words", [
    (_set("q", (3, 2), np.nan), 1, "q", ["1 non-finite", "t=3", "if_pip"]),
    (_set("q", (4, 12), hc.JOINT_UPPER[12] + 0.25), 1, "q", ["th_cmc (12)", "0.250 rad above"]),
    (_set("target", (2, 1), hc.JOINT_LOWER[1] - 0.1), 1, "target", ["if_mcp (1)", "0.100 rad below", "t=2"]),
    (_replace("q", (T1 + 1, 15)), 1, "q", ["15 joint columns"]),
    (_replace("q", (T1 + 3, 16)), 1, "q", ["inconsistent T"]),
    (_set("axis", slice(None), [0.0, 0.0, 2.0]), 1, "axis", ["norm 2.0000"]),
    (lambda f: f[f"traj/{S.group_name(1)}"].attrs.__setitem__("length", T1 + 5), 1, "length",
     [f"says {T1 + 5}", f"target has {T1} steps"]),
    (lambda f: f[f"traj/{S.group_name(1)}"].__delitem__("gravity_dir"), 1, "gravity_dir", ["missing"]),
    (_root("joint_order", SWAPPED), None, "joint_order", ["columns [0, 1]", "if_mcp"]),
    (_root("schema_version", S.SCHEMA_VERSION + 1), None, "schema_version", ["newer"]),
])
def test_validate_reports_each_corruption(valid_file, edit, index, field, words):
    assert validate(valid_file) == []
    with h5py.File(valid_file, "r+") as f:
        edit(f)
    problems = validate(valid_file)
    assert problems, "corruption not detected"
    assert any(p.index == index and p.field == field and all(w in p.message for w in words) for p in problems), problems
    assert all(p.index in (index, None) for p in problems)     # trajectory 0 stays clean


def test_validate_tolerates_tiny_limit_excursions(valid_file):
    with h5py.File(valid_file, "r+") as f:
        f[f"traj/{S.group_name(0)}/q"][0, 12] = hc.JOINT_UPPER[12] + S.MEASURED_LIMIT_TOLERANCE / 2   # a soft limit
        f[f"traj/{S.group_name(0)}/target"][0, 12] = hc.JOINT_UPPER[12] + S.LIMIT_TOLERANCE / 2
    assert validate(valid_file) == []
    with h5py.File(valid_file, "r+") as f:        # as far out, a command is wrong: the env clips them
        f[f"traj/{S.group_name(0)}/target"][0, 12] = hc.JOINT_UPPER[12] + S.MEASURED_LIMIT_TOLERANCE / 2
    assert [p.field for p in validate(valid_file)] == ["target"]


@pytest.mark.parametrize("edit, words", [
    (_root("schema_version", S.SCHEMA_VERSION + 1), ["newer", "upgrade dexndm"]),
    (lambda f: f.attrs.__delitem__("domain"), ["domain", "missing"]),
    (_root("joint_order", SWAPPED), ["joint_order", "to_hardware_order"]),
])
def test_reader_refuses_files_it_cannot_trust(valid_file, edit, words):
    with h5py.File(valid_file, "r+") as f:
        edit(f)
    with pytest.raises(SchemaError) as err:
        TrajectoryFile(valid_file)
    assert all(w in str(err.value) for w in words)


def test_reader_never_returns_half_a_dataset(valid_file):
    with h5py.File(valid_file, "r+") as f:
        f[f"traj/{S.group_name(1)}"].attrs["length"] = T1 - 4      # data and length disagree
    with TrajectoryFile(valid_file) as f, pytest.raises(SchemaError, match="trajectory 1"):
        f.load_all(["q", "target"])


def test_merge_sums_compatible_files_and_refuses_another_rate(tmp_path, domain):
    a = write_random_file(tmp_path / "a.h5", 2, seed=0, domain=domain, source={"kind": "policy", "category": "a"})
    b = write_random_file(tmp_path / "b.h5", 3, seed=10, domain=domain, source={"kind": "policy", "category": "b"})
    out = tmp_path / "ab.h5"
    assert merge([a, b], out) == 5
    assert validate(out) == []
    with TrajectoryFile(a) as fa, TrajectoryFile(b) as fb, TrajectoryFile(out) as fo:
        assert fo.indices == list(range(5))
        originals = [*fa, *fb]
        for i, traj in enumerate(fo):
            assert traj.keys() == originals[i].keys()
            assert all(np.array_equal(traj[k], originals[i][k]) for k in traj)
        assert fo.meta["source"]["kind"] == "merge"
        assert [x["source"]["category"] for x in fo.meta["source"]["inputs"]] == ["a", "b"]
        assert fo.meta["domain"] == fa.meta["domain"]
    with pytest.raises(FileExistsError):
        merge([a, b], out)
    c = write_random_file(tmp_path / "c.h5", 1, domain=domain, control_rate_hz=30.0)
    with pytest.raises(SchemaError, match="control rate 30.0 Hz vs 20.0 Hz"):
        merge([a, c], tmp_path / "ac.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "ab.h5", "b.h5", "c.h5"]


def test_cli_info_validate_merge_exit_codes(valid_file, tmp_path, capsys):
    assert data_main(["validate", str(valid_file)]) == 0
    assert "valid: 2 trajectories" in capsys.readouterr().out
    assert data_main(["info", str(valid_file), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trajectories"] == 2 and summary["transitions"] == 12 + T1
    assert data_main(["info", str(valid_file)]) == 0
    assert "trajectories" in capsys.readouterr().out
    assert data_main(["merge", str(tmp_path / "m.h5"), str(valid_file)]) == 0
    assert data_main(["info", str(tmp_path / "missing.h5")]) == 2
    with h5py.File(valid_file, "r+") as f:
        f[f"traj/{S.group_name(1)}/q"][0, 0] = np.inf
    capsys.readouterr()
    assert data_main(["validate", str(valid_file)]) == 1
    assert "traj 00000001 q: 1 non-finite" in capsys.readouterr().out
