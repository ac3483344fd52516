from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.models_tools import parity_cmd, quantize_cmd
from ml.build.optimize.parity import ParityReport, parity, time_session
from ml.build.optimize.quantize import convert_fp16, quantize_int8_dynamic, quantize_int8_static
from ml.manifest import Manifest, file_entry
from tests.ml.optimize_fixtures import export_tiny_cnn, image_feeds


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_cnn(tmp_path_factory.mktemp("cnn") / "model.onnx")


def _op_types(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_static_int8_is_qdq_and_close(fp32: Path, tmp_path: Path) -> None:
    dst = quantize_int8_static(fp32, tmp_path / "model.int8.onnx", image_feeds(16))
    assert dst.is_file()
    ops = _op_types(dst)
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    report = parity(fp32, dst, image_feeds(8, seed=7, batch=4))
    assert isinstance(report, ParityReport)
    assert report.n == 32
    # Softmax outputs in [0, 1]: INT8 must stay within a few percent and keep most decisions.
    assert 0 < report.max_abs_diff < 0.1
    assert report.mean_abs_diff <= report.max_abs_diff
    assert report.argmax_agreement >= 0.8


def test_static_int8_accepts_a_generator(fp32: Path, tmp_path: Path) -> None:
    feeds = (feed for feed in image_feeds(4))
    dst = quantize_int8_static(fp32, tmp_path / "gen.onnx", feeds, per_channel=False)
    assert "QuantizeLinear" in _op_types(dst)


def test_excluded_nodes_stay_float(fp32: Path, tmp_path: Path) -> None:
    first_conv = next(n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv")
    dst = quantize_int8_static(fp32, tmp_path / "ex.onnx", image_feeds(4), exclude_nodes=[first_conv],
                               preprocess=False)
    nodes = {n.name: n for n in onnx.load(str(dst)).graph.node}
    # The excluded conv reads its weight directly, the others through a DequantizeLinear.
    produced_by = {out: n.op_type for n in nodes.values() for out in n.output}
    assert produced_by.get(nodes[first_conv].input[1]) != "DequantizeLinear"
    others = [n for n in nodes.values() if n.op_type == "Conv" and n.name != first_conv]
    assert others and all(produced_by.get(n.input[1]) == "DequantizeLinear" for n in others)


def test_dynamic_int8_quantises_weights(fp32: Path, tmp_path: Path) -> None:
    dst = quantize_int8_dynamic(fp32, tmp_path / "dyn.onnx")
    ops = _op_types(dst)
    assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul"}
    report = parity(fp32, dst, image_feeds(4, seed=3))
    assert report.max_abs_diff < 0.1


def test_fp16_keeps_float32_io_and_halves_weights(fp32: Path, tmp_path: Path) -> None:
    dst = convert_fp16(fp32, tmp_path / "fp16.onnx")
    model = onnx.load(str(dst))
    float32 = onnx.TensorProto.FLOAT
    assert model.graph.input[0].type.tensor_type.elem_type == float32
    assert model.graph.output[0].type.tensor_type.elem_type == float32
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
    assert dst.stat().st_size < fp32.stat().st_size
    report = parity(fp32, dst, image_feeds(4, seed=5))
    assert report.max_abs_diff < 1e-2
    assert report.argmax_agreement == 1.0


def test_parity_of_a_model_with_itself_is_exact(fp32: Path) -> None:
    report = parity(fp32, fp32, image_feeds(3))
    assert report.max_abs_diff == 0.0
    assert report.argmax_agreement == 1.0
    assert report.n == 3


def test_parity_needs_feeds(fp32: Path) -> None:
    with pytest.raises(ValueError):
        parity(fp32, fp32, [])


def test_time_session_returns_a_positive_median(fp32: Path) -> None:
    seconds = time_session(fp32, image_feeds(2), repeats=3)
    assert 0 < seconds < 1.0
    assert np.isfinite(seconds)


# ---- the `deepscreen models quantize | parity` commands on a model version -------------------

def _repository(root: Path) -> Path:
    directory = root / "tiny" / "1"
    directory.mkdir(parents=True)
    model = export_tiny_cnn(directory / "model.onnx")
    Manifest(
        name="tiny", version="1", task="demo", pipeline="nsfw", directory=directory,
        files={"classifier": file_entry(directory, model)}, labels=["a", "b"],
        inputs={"classifier": {"name": "input", "shape": ["N", 3, 32, 32], "layout": "NCHW"}},
        preprocessing={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    ).save()
    return root


def _image_dir(root: Path, count: int = 6) -> Path:
    rng = np.random.default_rng(9)
    root.mkdir()
    for i in range(count):
        Image.fromarray((rng.random((20, 30, 3)) * 255).astype(np.uint8)).resize((60, 40)).save(root / f"{i}.png")
    return root


def test_quantize_command_registers_a_verified_variant(tmp_path: Path) -> None:
    repo = _repository(tmp_path / "repo")
    images = _image_dir(tmp_path / "calib")
    result = CliRunner().invoke(quantize_cmd, ["tiny", "--mode", "int8-static", "--calibration", str(images),
                                               "--force", "--repository", str(repo)])
    assert result.exit_code == 0, result.output
    assert "max abs diff" in result.output and "fp32" in result.output
    manifest = Manifest.load(repo / "tiny" / "1")
    manifest.verify()
    assert manifest.files["classifier.int8"]["path"] == "model.int8.onnx"
    assert manifest.variant("classifier", ["int8", "fp32"])[0] == "int8"
    assert manifest.provenance["variants"]["classifier.int8"]["samples"] == 6

    parity_run = CliRunner().invoke(parity_cmd, ["tiny", "--variant", "int8", "--images", str(images),
                                                 "--repository", str(repo)])
    assert parity_run.exit_code == 0, parity_run.output
    assert "argmax agreement" in parity_run.output
    missing = CliRunner().invoke(parity_cmd, ["tiny", "--variant", "fp16", "--repository", str(repo)])
    assert missing.exit_code != 0 and "no classifier.fp16 variant" in missing.output


def test_int8_slower_than_fp32_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ml.build.optimize.variants as variants

    repo = _repository(tmp_path / "repo")

    def slower_when_quantised(path: Path, feeds: list, repeats: int = 10) -> float:  # type: ignore[type-arg]
        return 0.002 if ".tmp" in path.name else 0.001

    monkeypatch.setattr(variants, "time_session", slower_when_quantised)
    result = CliRunner().invoke(quantize_cmd, ["tiny", "--mode", "int8-dynamic", "--repository", str(repo)])
    assert result.exit_code != 0
    assert "slower" in result.output or "not registered" in result.output
    manifest = Manifest.load(repo / "tiny" / "1")
    assert "classifier.int8" not in manifest.files
    assert sorted(p.name for p in manifest.directory.iterdir()) == ["manifest.json", "model.onnx"]
