from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ml.build.importers.timm_import import (
    CheckpointError,
    build_model,
    import_checkpoint,
    match_state_dict,
    read_state_dict,
)
from ml.manifest import Manifest, ModelError, file_entry
from tests.ml.optimize_fixtures import export_tiny_cnn

SIZE = 64  # small crops keep the export and parity check fast; the architecture is the real B4


def _template_repository(root: Path) -> Path:
    """A ``deepfake/1`` version with a detector file, standing in for the real face-detector model."""
    directory = root / "deepfake" / "1"
    (directory / "detector").mkdir(parents=True)
    detector = export_tiny_cnn(directory / "detector" / "faces.onnx")
    classifier = export_tiny_cnn(directory / "classifier.onnx", seed=3)
    Manifest(
        name="deepfake", version="1", task="deepfake", pipeline="deepfake", directory=directory,
        files={"detector": file_entry(directory, detector), "classifier": file_entry(directory, classifier)},
        labels=["real", "fake"], thresholds={"fake": 0.6}, media=["image", "video"],
        preprocessing={"margin": 0.3}, options={"aggregation": "mean"},
    ).save()
    return root


@pytest.fixture(scope="module")
def b4_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Randomly initialised B4 weights saved the way training scripts do: nested, DataParallel-prefixed."""
    import torch

    torch.manual_seed(0)
    model = build_model("efficientnet_b4", classes=1)
    path = tmp_path_factory.mktemp("ckpt") / "b4.pth"
    nested = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}
    torch.save(nested, path)
    return path


def test_import_writes_a_verified_deepfake_version(tmp_path: Path, b4_checkpoint: Path) -> None:
    root = _template_repository(tmp_path)
    result = import_checkpoint(root, "efficientnet_b4", b4_checkpoint, "deepfake-b4", "7", input_size=SIZE)
    manifest = Manifest.load(root / "deepfake-b4" / "7")
    manifest.verify()  # every file, copied detector included, matches its sha256
    assert manifest.task == "deepfake" and manifest.pipeline == "deepfake"
    assert set(manifest.files) == {"classifier", "detector"}
    assert manifest.thresholds == {"fake": 0.5}  # the template's threshold belongs to its own classifier
    assert manifest.options["crop_size"] == SIZE and manifest.options["aggregation"] == "mean"
    assert manifest.provenance["checkpoint_sha256"] == result.checkpoint_sha256
    assert result.max_abs_diff <= 1e-3
    assert result.mapping == "names"
    card = (manifest.directory / "MODEL_CARD.md").read_text()
    assert f"imported from user checkpoint {result.checkpoint_sha256}" in card

    session = ort.InferenceSession(str(manifest.path("classifier")), providers=["CPUExecutionProvider"])
    batch = (np.random.default_rng(0).random((3, 3, SIZE, SIZE)) * 255).astype(np.float32)
    p_fake = session.run(["p_fake"], {"image": batch})[0]
    assert p_fake.shape == (3,)  # the batch axis is dynamic
    assert ((p_fake >= 0) & (p_fake <= 1)).all()
    saved = json.loads((manifest.directory / "manifest.json").read_text())["inputs"]["classifier"]
    assert saved["shape"][2] == SIZE and saved["range"] == [0, 255]


def test_import_refuses_without_a_face_detector(tmp_path: Path, b4_checkpoint: Path) -> None:
    with pytest.raises(ModelError, match="face-detector"):
        import_checkpoint(tmp_path, "efficientnet_b4", b4_checkpoint, "deepfake-b4", "1", input_size=SIZE)
    assert not (tmp_path / "deepfake-b4").exists()


def test_checkpoint_of_another_architecture_is_refused_clearly(tmp_path: Path) -> None:
    import torch

    from ml.build.importers.timm_shim import import_timm

    other = import_timm().create_model("resnet18", pretrained=False, num_classes=1)
    path = tmp_path / "resnet.pt"
    torch.save({"model": other.state_dict()}, path)
    with pytest.raises(CheckpointError, match="does not fit"):
        match_state_dict(build_model("efficientnet_b4", 1), read_state_dict(path))


def test_renamed_layers_in_the_same_order_load_by_position(tmp_path: Path) -> None:
    import torch

    model = build_model("efficientnet_b4", classes=2)
    renamed = {f"layer{i}.{k.rsplit('.', 1)[-1]}": v for i, (k, v) in enumerate(model.state_dict().items())}
    mapped, how = match_state_dict(build_model("efficientnet_b4", classes=2), renamed)
    assert how == "position"
    weights = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(mapped) == set(weights)
    for key, value in weights.items():
        assert torch.equal(mapped[key], value)


def test_pickled_extras_need_trust(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "odd.pt"
    torch.save({"state_dict": {"w": torch.zeros(2, 2)}, "best": Path("x")}, path)
    with pytest.raises(CheckpointError, match="trust-checkpoint"):
        read_state_dict(path)
    assert set(read_state_dict(path, trust=True)) == {"w"}


def test_import_command_explains_a_refusal(tmp_path: Path, b4_checkpoint: Path) -> None:
    from click.testing import CliRunner

    from cli.models_tools import import_cmd

    result = CliRunner().invoke(import_cmd, [
        "--arch", "efficientnet_b4", "--checkpoint", str(b4_checkpoint), "--name", "deepfake-b4",
        "--version", "1", "--input-size", str(SIZE), "--repository", str(tmp_path)])
    assert result.exit_code != 0
    assert "face-detector" in result.output and "deepscreen models build deepfake" in result.output
