"""Deploy bundles: round trip within 1e-5, and every mismatched/unknown/newer/tampered bundle refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from dexndm.deploy.export import (BUNDLE_SCHEMA_VERSION, DEVIATION_SAMPLES, BundleError, export_bundle, load_bundle,
                                  quantize_int8)
from dexndm.files import file_sha256
from dexndm.deploy.testing import write_tiny_checkpoints
from dexndm.hand.constants import JOINT_LOWER, JOINT_NAMES, JOINT_UPPER
from dexndm.models.deploy_policy import DeployPolicy
from dexndm.sim.observations import deploy_layout

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return write_tiny_checkpoints(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def bundle_dir(ckpts, tmp_path_factory):
    gen, res = ckpts
    return export_bundle(gen, tmp_path_factory.mktemp("b") / "bundle", res, domain="latency", hand="leap")


def _inputs(batch: int, seed: int, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(JOINT_LOWER).float(), torch.tensor(JOINT_UPPER).float()
    q = lo + (hi - lo) * torch.rand(batch, 16, generator=g)
    prev = lo + (hi - lo) * torch.rand(batch, 16, generator=g)
    return scale * torch.randn(batch, deploy_layout().dim, generator=g), q, prev


@pytest.mark.parametrize("with_residual", [True, False])
def test_round_trip_within_1e5(ckpts, tmp_path, with_residual) -> None:
    gen, res = ckpts
    res = res if with_residual else None
    bundle = load_bundle(export_bundle(gen, tmp_path / "b", res))
    module, _ = DeployPolicy.from_checkpoints(gen, res)
    assert bundle.manifest["policy"]["has_residual"] is with_residual
    for batch, seed, scale in ((1, 0, 1.0), (7, 1, 1.0), (3, 2, 100.0)):
        x = _inputs(batch, seed, scale)
        with torch.no_grad():
            want, got = module(*x), bundle(*x)
        for a, b in zip(want, got):
            assert a.shape == b.shape == (batch, 16)
            assert float((a - b).abs().max()) <= 1e-5
    if with_residual:          # the residual really acts: command != chain target
        with torch.no_grad():
            target, command = bundle(*_inputs(4, 3))
        assert float((command - target).abs().max()) > 1e-3


def test_manifest_contents(bundle_dir, ckpts) -> None:
    m = load_bundle(bundle_dir).manifest
    gen, res = ckpts
    assert m["schema_version"] == BUNDLE_SCHEMA_VERSION and m["joint_order"] == list(JOINT_NAMES)
    assert m["observation"]["history"] == 10 and m["observation"]["layout"] == deploy_layout(10).to_dict()
    assert m["control_rate_hz"] == 20.0 and m["action_scale"] == pytest.approx(1 / 24)
    assert m["joint_limits"]["lower"] == pytest.approx(list(JOINT_LOWER))
    assert m["parents"]["generalist"]["sha256"] == file_sha256(gen)
    assert m["parents"]["residual"]["sha256"] == file_sha256(res)
    assert len(m["normalization"]["obs"]["mean"]) == deploy_layout().dim
    assert m["normalization"]["residual"]["q_std"] == pytest.approx([0.6] * 16)
    assert m["domain"] == "latency" and m["hand"] == "leap"
    assert m["policy"]["sha256"] == file_sha256(bundle_dir / "policy.pt")
    assert m["policy"]["precision"] == "fp32" and m["policy"]["quantization"] is None
    assert not list(bundle_dir.parent.glob(".*exporting*"))          # atomic: no temporary left


def _tampered(bundle_dir, tmp_path, edit):
    dst = tmp_path / "t"
    shutil.copytree(bundle_dir, dst)
    m = json.loads((dst / "manifest.json").read_text())
    edit(m)
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update(joint_order=list(reversed(m["joint_order"]))), "joint order"),
    (lambda m: m.update(schema_version=BUNDLE_SCHEMA_VERSION + 1), "newer dexndm.*upgrade"),
    (lambda m: m.update(schema_version="1"), "unknown schema version"),
    (lambda m: m.update(format="something.else"), "not a dexndm bundle"),
    (lambda m: m["observation"].update(history=8), "layout mismatch"),
    (lambda m: m["joint_limits"]["upper"].__setitem__(0, 3.0), "joint limits"),
    (lambda m: m.update(control_rate_hz=30.0), "30.0 Hz"),
    (lambda m: m.update(action_scale=0.1), "action scale"),
    (lambda m: m.pop("observation"), "malformed"),
    (lambda m: m["policy"].update(precision="fp16"), "unknown precision"),
])
def test_mismatched_bundles_refused(bundle_dir, tmp_path, edit, match) -> None:
    with pytest.raises(BundleError, match=match):
        load_bundle(_tampered(bundle_dir, tmp_path, edit))


def test_tampered_or_missing_files_refused(bundle_dir, tmp_path) -> None:
    dst = tmp_path / "t"
    shutil.copytree(bundle_dir, dst)
    with open(dst / "policy.pt", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(dst)
    (dst / "policy.pt").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(dst)
    with pytest.raises(FileNotFoundError, match="not a deploy bundle"):
        load_bundle(tmp_path)
    (dst / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="JSON"):
        load_bundle(dst)


def test_export_app_and_overwrite(ckpts, tmp_path) -> None:
    from dexndm.apps.export import run

    gen, res = ckpts
    out = run({"generalist": str(gen), "residual": None, "out": str(tmp_path / "b"), "hand": "sim"})
    assert out["manifest"]["parents"]["residual"] is None
    with pytest.raises(FileExistsError, match="overwrite"):
        run({"generalist": str(gen), "out": str(tmp_path / "b")})
    run({"generalist": str(gen), "residual": str(res), "out": str(tmp_path / "b"), "overwrite": True})
    assert load_bundle(tmp_path / "b").manifest["policy"]["has_residual"]
    with pytest.raises(ValueError, match="generalist"):
        run({"out": str(tmp_path / "c")})
    bad = tmp_path / "bad.ckpt"
    ck = torch.load(gen, weights_only=True)
    ck["dexndm_meta"]["joint_order"] = list(reversed(JOINT_NAMES))
    torch.save(ck, bad)
    with pytest.raises(ValueError, match="joint order"):
        export_bundle(bad, tmp_path / "d")
    assert not (tmp_path / "d").exists()


# -- int8 --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def int8_dir(ckpts, tmp_path_factory):
    gen, res = ckpts
    return export_bundle(gen, tmp_path_factory.mktemp("q") / "bundle", res, precision="int8")


def test_int8_bundle_matches_quantised_module(ckpts, int8_dir) -> None:
    """int8: the bundle equals the quantised PyTorch module within 1e-5, really runs int8 kernels,
    and differs from fp32 by about what the manifest reports."""
    gen, res = ckpts
    bundle = load_bundle(int8_dir)
    module, _ = DeployPolicy.from_checkpoints(gen, res)
    qmodule = quantize_int8(module)
    assert bundle.precision == "int8"
    assert "quantized" in bundle.policy.inlined_graph.__str__()           # dynamic int8 linear ops
    assert not any(type(m) is torch.nn.Linear for m in qmodule.modules())     # every Linear replaced
    dev = 0.0
    for batch, seed in ((1, 0), (7, 1), (1, 2)):
        x = _inputs(batch, seed)
        with torch.no_grad():
            for a, b, c in zip(qmodule(*x), bundle(*x), module(*x)):
                assert float((a - b).abs().max()) <= 1e-5
                dev = max(dev, float((b - c).abs().max()))
    q = bundle.manifest["policy"]["quantization"]
    reported = q["max_abs_dev_vs_fp32_rad"]
    assert q["deviation_samples"] == DEVIATION_SAMPLES and q["dtype"] == "qint8"
    assert 0 < reported["target"] <= reported["command"] <= 0.01        # the residual's error adds on top
    assert 1e-6 < dev < 0.05                                            # quantised, but close to fp32


def test_int8_refused_beyond_max_deviation(ckpts, tmp_path) -> None:
    gen, res = ckpts
    with pytest.raises(ValueError, match="precision=fp32"):
        export_bundle(gen, tmp_path / "q", res, precision="int8", max_int8_deviation=1e-7)
    with pytest.raises(ValueError, match="precision must be one of"):
        export_bundle(gen, tmp_path / "q", res, precision="fp16")
    assert not (tmp_path / "q").exists() and not list(tmp_path.glob(".*exporting*"))


def test_bundle_without_precision_is_fp32(bundle_dir, tmp_path) -> None:
    """Bundles written before the precision option load as fp32."""
    assert load_bundle(_tampered(bundle_dir, tmp_path, lambda m: m["policy"].pop("precision"))).precision == "fp32"


def test_export_app_int8(ckpts, tmp_path, capsys) -> None:
    from dexndm.apps.export import run

    gen, res = ckpts
    out = run({"generalist": str(gen), "residual": str(res), "out": str(tmp_path / "b"), "precision": "int8"})
    assert out["manifest"]["policy"]["precision"] == "int8" and "max |command|" in capsys.readouterr().out


def test_bench_deploy_reports_the_weight_read_floor_of_the_bundle_it_times(tmp_path) -> None:
    """`dexndm bench deploy`'s floor is computed from the bytes of the very fp32 bundle it times:
    the paper-size generalist (1024 wide, 5 blocks) plus the residual, parameters and buffers."""
    from dexndm.bench import deploy as bench
    from dexndm.deploy.testing import write_tiny_checkpoints

    gen, res = write_tiny_checkpoints(tmp_path, hidden=1024, blocks=5, res_hidden=256, res_depth=2)
    bundle = load_bundle(export_bundle(gen, tmp_path / "b", res))
    traced = bench._module_bytes(bundle.policy)
    modules = [torch.load(p, weights_only=True)["state_dict"] for p in (gen, res)]
    stored = sum(t.numel() * t.element_size() for sd in modules for t in sd.values())
    assert traced >= 15 * 1024 * 1024 * 4                          # 5 blocks x 3 layers of 1024 x 1024 fp32
    assert 0 <= traced - stored <= 1024                              # both modules' tensors, plus the deploy
                                                                     # wrapper's own small buffers (joint limits)
    assert 0 < bench._read_floor_ms(traced) < 1000
