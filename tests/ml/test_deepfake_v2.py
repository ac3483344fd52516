"""deepfake/2 (MesoNet) built into a temporary repository: manifest, licences, card, the pipeline on a
face photo, a photo without a face and a short video, the real-face threshold, and versions 1 and 2 side
by side."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ml.build.builders import BUILDERS, builder
from ml.build.builders.deepfake_v2 import (
    DETECTOR,
    MARGINS,
    MAX_FPR,
    detector_for,
    real_face_scores,
    sample_crop_margins,
)
from ml.build.face_detectors import detector_files
from ml.build.faces import read_rgb
from ml.face_detection.factory import CUDA_DETECTOR_BATCH, build_detector
from ml.image_decode import decode_image
from ml.manifest import NOT_VALIDATED, Manifest
from ml.pipelines.deepfake import DeepfakePipeline
from ml.repository import ModelRepository
from ml.runtime import CPU
from ml.video_decode import decode_video
from tests.support.claims_cuda import ClaimsCuda

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mesonet" / "test_images"


@pytest.fixture(scope="module")
def v2_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deepfake/2 built by the registered builder into a fresh repository (~30 s on 2 cores)."""
    root = tmp_path_factory.mktemp("deepfake_v2_repository")
    manifest = builder("deepfake_v2")(root, True)
    assert (manifest.name, manifest.version) == ("deepfake", "2")
    return root


@pytest.fixture(scope="module")
def manifest(v2_repo: Path) -> Manifest:
    return ModelRepository(v2_repo).manifest("deepfake", "2")


@pytest.fixture(scope="module")
def pipeline(v2_repo: Path) -> DeepfakePipeline:
    loaded = ModelRepository(v2_repo).load("deepfake", [CPU], threads=1, version="2")
    assert isinstance(loaded, DeepfakePipeline)
    return loaded


def test_registered_after_deepfake_1() -> None:
    names = list(BUILDERS)
    assert names.index("deepfake_v2") == names.index("deepfake") + 1


def test_manifest_and_licences(manifest: Manifest) -> None:
    manifest.verify()
    assert (manifest.task, manifest.pipeline, manifest.labels) == ("deepfake", "deepfake", ["real", "fake"])
    assert {"classifier", "classifier.fp16"} <= set(manifest.files) and "classifier.int8" not in manifest.files
    assert manifest.options["crop_size"] == 256 and manifest.options["margin"] == MARGINS[DETECTOR]
    assert manifest.options["detector"] == DETECTOR
    for name in ("LICENSE", "NOTICE"):
        assert (manifest.directory / name).read_bytes() == (Path("ml/weights/mesonet") / name).read_bytes()
    assert "Apache License" in (manifest.directory / "LICENSE").read_text()
    assert manifest.provenance["torch_onnx_max_diff"] <= 1e-4


def test_validation_block_is_honest(manifest: Manifest) -> None:
    block = manifest.summary()["validation"]
    assert block["status"] == NOT_VALIDATED
    assert "not ours" in block["summary"] and "0.81" in block["summary"]
    (real_faces,) = block["datasets"]
    assert real_faces["positives"] == 0 and real_faces["fpr"] <= MAX_FPR
    lo, hi = real_faces["fpr_ci"]
    assert 0.0 <= lo <= real_faces["fpr"] <= hi <= 1.0
    assert real_faces["threshold"] == pytest.approx(manifest.thresholds["fake"], abs=1e-6)
    json.dumps(block)


def test_card_scopes_the_model(manifest: Manifest) -> None:
    card = (manifest.directory / "MODEL_CARD.md").read_text()
    assert "Not whole-face GAN or diffusion images" in card
    assert "not validated by deepscreen on real labelled deepfakes" in card
    assert "Apache-2.0" in card and "LICENSE" in card and "NOTICE" in card
    assert "Third-party figure (not ours)" in card and "margin" in card


def test_threshold_flags_at_most_5_percent_of_the_real_faces(manifest: Manifest) -> None:
    """Re-score the bundled real faces through the built version's pipeline: at most 5 % reach the threshold."""
    _, scores, missed = real_face_scores(manifest)
    assert len(scores) >= 90 and len(missed) <= 10
    assert float(np.mean(scores >= manifest.thresholds["fake"])) <= MAX_FPR


def test_face_photo(pipeline: DeepfakePipeline, astronaut_jpeg: bytes) -> None:
    (outcome,) = pipeline.predict([decode_image(astronaut_jpeg, 50_000_000)])
    assert outcome.score is not None and outcome.label == "real"  # a sharp real photo: MesoNet says ~0
    assert outcome.score < 0.1 and outcome.scores["fake"] + outcome.scores["real"] == pytest.approx(1.0)
    faces = outcome.evidence["faces"]
    assert len(faces) == 1 and faces[0]["detector_score"] > 0.9
    assert outcome.evidence["precision"] == "fp32"  # no INT8 variant: the CPU runs FP32
    json.dumps(outcome.evidence)


def test_photo_without_a_face(pipeline: DeepfakePipeline, cat_jpeg: bytes) -> None:
    (outcome,) = pipeline.predict([decode_image(cat_jpeg, 50_000_000)])
    assert outcome.label == "no_face" and outcome.score is None


def test_short_video(pipeline: DeepfakePipeline, short_video_mp4: bytes) -> None:
    item = decode_video(short_video_mp4, "mp4", max_seconds=10, max_frames=8)
    (outcome,) = pipeline.predict([item])
    frames = outcome.evidence["frames"]
    assert [f["frame"] for f in frames] == item.frame_indices and len(frames) == len(item.frames)
    assert outcome.label == "real" and outcome.score is not None and outcome.score < pipeline.threshold
    assert outcome.evidence["aggregation"]["item"] == "confident"


def test_batch_does_not_change_scores(pipeline: DeepfakePipeline, astronaut_jpeg: bytes, cat_jpeg: bytes) -> None:
    alone = pipeline.predict([decode_image(astronaut_jpeg, 50_000_000)])[0].score
    together = pipeline.predict([decode_image(cat_jpeg, 50_000_000), decode_image(astronaut_jpeg, 50_000_000)])
    assert together[1].score == pytest.approx(alone, abs=1e-6)


def test_padded_batches_change_nothing(pipeline: DeepfakePipeline, astronaut_jpeg: bytes, cat_jpeg: bytes,
                                       short_video_mp4: bytes) -> None:
    """On CUDA the detector and classifier pad each call to a power-of-two batch (few shapes for the GPU to
    plan). No GPU here, so padding is switched on by hand on the CPU pipeline: same faces, same scores."""
    items = [decode_image(astronaut_jpeg, 50_000_000), decode_image(cat_jpeg, 50_000_000),
             decode_video(short_video_mp4, "mp4", max_seconds=10, max_frames=5)]
    assert not pipeline.classifier.pad and not pipeline.detector.pad_batches  # the CPU never pads
    plain = pipeline.predict(items)
    try:
        pipeline.classifier.pad = pipeline.detector.pad_batches = True
        padded = pipeline.predict(items)
    finally:
        pipeline.classifier.pad = pipeline.detector.pad_batches = False
    for a, b in zip(plain, padded, strict=True):
        assert a.label == b.label and (a.score is None) == (b.score is None)
        assert a.score is None or b.score == pytest.approx(a.score, abs=1e-6)
        assert [f["box"] for f in a.evidence["faces"]] == [f["box"] for f in b.evidence["faces"]]


def test_on_cuda_the_detector_takes_chunks_of_eight(pipeline: DeepfakePipeline, manifest: Manifest,
                                                    astronaut_jpeg: bytes, cat_jpeg: bytes,
                                                    short_video_mp4: bytes) -> None:
    """On an H200 BlazeFace's call got slower per frame past batch 8, so on CUDA a batch is cut into padded
    calls of at most 8 frames; the faces found are the CPU detector's, frame for frame."""
    frames = [*decode_video(short_video_mp4, "mp4", max_seconds=10, max_frames=10).frames,
              *decode_image(astronaut_jpeg, 50_000_000).frames, *decode_image(cat_jpeg, 50_000_000).frames]
    assert len(frames) > CUDA_DETECTOR_BATCH
    calls: list[int] = []
    on_gpu = build_detector(manifest.options, lambda role: ClaimsCuda(pipeline.session(role)[0], calls))
    assert on_gpu.max_batch == CUDA_DETECTOR_BATCH and on_gpu.pad_batches  # type: ignore[attr-defined]
    assert pipeline.detector.max_batch == 64  # type: ignore[attr-defined]  # the CPU keeps big calls
    found, expected = on_gpu.detect_batch(frames), pipeline.detector.detect_batch(frames)
    assert calls and max(calls) == CUDA_DETECTOR_BATCH and all(n & (n - 1) == 0 for n in calls)
    assert sum(1 for n in calls if n == CUDA_DETECTOR_BATCH) >= len(frames) // CUDA_DETECTOR_BATCH
    assert [len(faces) for faces in found] == [len(faces) for faces in expected]
    for faces, same in zip(found, expected, strict=True):
        for face, twin in zip(faces, same, strict=True):
            assert face.box == pytest.approx(twin.box, abs=1e-3)
    assert any(found)


def test_version_2_is_live_and_version_1_stays_selectable(v2_repo: Path, deepfake_repo: Path,
                                                          tmp_path: Path) -> None:
    both = tmp_path / "repo"
    shutil.copytree(v2_repo / "deepfake" / "2", both / "deepfake" / "2")
    shutil.copytree(deepfake_repo / "deepfake" / "1", both / "deepfake" / "1")
    repo = ModelRepository(both)
    assert repo.versions("deepfake") == ["1", "2"] and repo.manifest("deepfake").version == "2"
    v1 = repo.load("deepfake", [CPU], threads=1, version="1")
    assert v1.version == "1" and v1.manifest.options["crop_size"] == 224


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"the MesoNet authors' sample crops are not here ({SAMPLES})")
def test_margin_matches_how_the_authors_cut_their_crops(tmp_path: Path) -> None:
    """The authors' sample crops measure 1.0-1.34 x the detector's box; the shipped margin sits near their mean."""
    crops = [read_rgb(p) for p in sorted(SAMPLES.glob("*/*.jpg"))]  # at their own size, square
    margins = sample_crop_margins(detector_for(DETECTOR, detector_files(DETECTOR, tmp_path)), crops)
    assert len(margins) == 4
    assert abs(float(np.mean(margins)) - MARGINS[DETECTOR]) <= 0.1, margins

