"""Self-blended images: a pseudo-fake changes the face region only, reproducibly; and the SBI recipe that
fine-tunes the whole backbone on them (reproducible on a tiny slice)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from ml.build.training.sbi import blend_mask, face_outline, self_blend

# Five landmarks of a centred, upright face in a 160 px crop (eyes, nose, mouth corners).
LANDMARKS = np.array([[60, 65], [100, 65], [80, 88], [64, 110], [96, 110]], dtype=float)


@pytest.fixture()
def face() -> np.ndarray:
    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8), (7, 7), 0)
    cv2.ellipse(image, (80, 85), (40, 55), 0, 0, 360, (200, 160, 140), -1)
    return image


def test_shape_dtype_and_mask_range(face: np.ndarray) -> None:
    out = self_blend(face, LANDMARKS, np.random.default_rng(0))
    assert out.image.shape == face.shape and out.image.dtype == np.uint8
    assert out.mask.shape == face.shape[:2] and out.mask.dtype == np.float32
    assert out.mask.min() >= 0.0 and out.mask.max() <= 1.0


@pytest.mark.parametrize("seed", range(8))
def test_changes_only_inside_the_mask(face: np.ndarray, seed: int) -> None:
    out = self_blend(face, LANDMARKS, np.random.default_rng(seed))
    outside = out.mask == 0
    assert outside.any() and (~outside).any()
    assert np.array_equal(out.image[outside], face[outside])
    changed = np.any(out.image != face, axis=2)
    assert changed.any()
    assert not (changed & outside).any()
    # The blend sits on the face: most of the mask lies inside the estimated face outline.
    hull = np.zeros(face.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(face_outline(LANDMARKS)).astype(np.int32)), 1)
    weight = out.mask.sum()
    assert out.mask[hull > 0].sum() / weight > 0.7


def test_reproducible_with_a_seed(face: np.ndarray) -> None:
    a = self_blend(face, LANDMARKS, np.random.default_rng(42))
    b = self_blend(face, LANDMARKS, np.random.default_rng(42))
    c = self_blend(face, LANDMARKS, np.random.default_rng(43))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)


def test_input_is_not_modified(face: np.ndarray) -> None:
    before = face.copy()
    self_blend(face, LANDMARKS, np.random.default_rng(0))
    assert np.array_equal(face, before)


def test_outline_surrounds_the_landmarks() -> None:
    hull = cv2.convexHull(np.round(face_outline(LANDMARKS)).astype(np.float32))
    for x, y in LANDMARKS:
        assert cv2.pointPolygonTest(hull, (float(x), float(y)), False) >= 0


def test_mask_blend_ratios_vary() -> None:
    peaks = {round(float(blend_mask((160, 160), LANDMARKS, np.random.default_rng(s)).max()), 2) for s in range(40)}
    assert len(peaks) >= 3 and max(peaks) == 1.0  # full blends and partial ones (0.25 … 0.75)


def test_rejects_non_rgb() -> None:
    with pytest.raises(ValueError):
        self_blend(np.zeros((10, 10), np.uint8), LANDMARKS, np.random.default_rng(0))


# ---- the recipe with the backbone trained too (deepscreen train deepfake --fine-tune) -------------------------

@pytest.fixture(scope="module")
def tiny_faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three bundled real photos: two sharp ones and one tiny LFW face."""
    from ml.build.faces import write_bundled_faces

    everything = write_bundled_faces(tmp_path_factory.mktemp("bundled"))
    folder = tmp_path_factory.mktemp("tiny_faces")
    for path in everything:
        if path.name in ("astronaut.png", "grace_hopper.jpg", "lfw_000.png"):
            shutil.copyfile(path, folder / path.name)
    return folder


@pytest.mark.slow
def test_fine_tune_is_reproducible_and_trains_the_backbone(tiny_faces: Path, tmp_path: Path) -> None:
    """Two steps, seeded: the function and the CLI give the same weights; the backbone moved off ImageNet;
    the exported ONNX classifier computes what the trained torch model computes."""
    import torch
    from click.testing import CliRunner

    from cli.train_deepfake import train_deepfake
    from ml.build.efficientnet import torch_model
    from ml.build.training.deepfake_finetune import backbone_path, fine_tune, fine_tuned_model
    from ml.face_crops import to_batch
    from ml.runtime import CPU, make_session

    first = tmp_path / "a" / "head.npz"
    report = fine_tune(tiny_faces, first, seed=0, epochs=1, batch_size=4, max_steps=2, device="cpu")
    assert (report.mode, report.steps, report.device, report.train_samples) == ("fine_tune", 2, "cpu", 8)
    assert len(report.held_out) == 1 and not set(report.held_out) & set(report.train)

    second = tmp_path / "b" / "head.npz"
    result = CliRunner().invoke(train_deepfake, [
        "--faces", str(tiny_faces), "--out", str(second), "--fine-tune", "--epochs", "1", "--batch-size", "4",
        "--max-steps", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for name in (first, backbone_path(first)):
        with np.load(name) as a, np.load(second.parent / name.name) as b:
            assert a.files == b.files
            for key in a.files:
                np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-6, err_msg=f"{name.name}:{key}")
    with np.load(first) as head:
        assert int(head["fine_tuned"]) == 1 and head["weight"].shape == (1280,)

    pretrained = torch_model(None).net.state_dict()
    with np.load(backbone_path(first)) as trained:
        moved = [k for k in trained.files if trained[k].dtype == np.float32
                 and not np.array_equal(trained[k], pretrained[k].numpy())]
    assert any(".weight" in k and "_bn" not in k for k in moved)  # convolution weights trained, not only the head

    crop = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = fine_tuned_model(first)(torch.from_numpy(to_batch(list(crop)))).numpy()
    got = make_session(first.with_suffix(".onnx"), [CPU], 0).run(None, {"image": to_batch(list(crop))})[0]
    assert np.abs(expected - got).max() <= 1e-4


def test_device_choice() -> None:
    import torch

    from ml.build.training.deepfake_finetune import pick_device

    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            pick_device("cuda")
