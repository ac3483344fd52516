"""The deepfake model version end to end: build, verify, pipeline on images and video, INT8 parity,
aggregation rules and the training command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ml.aggregation import aggregate, confident_strategy, frame_scores
from ml.build.builders.deepfake import calibration_crops, int8_parity, int8_within_tolerance
from ml.image_decode import decode_image
from ml.manifest import Manifest, ModelError
from ml.pipelines.deepfake import DeepfakePipeline
from ml.repository import ModelRepository
from ml.runtime import CPU
from ml.video_decode import decode_video


@pytest.fixture(scope="module")
def pipeline(deepfake_repo: Path) -> DeepfakePipeline:
    loaded = ModelRepository(deepfake_repo).load("deepfake", [CPU], threads=1, version="1")
    assert isinstance(loaded, DeepfakePipeline)
    return loaded


def test_manifest_describes_the_model(deepfake_repo: Path) -> None:
    manifest = ModelRepository(deepfake_repo).manifest("deepfake", "1")
    manifest.verify()
    assert (manifest.task, manifest.pipeline) == ("deepfake", "deepfake")
    assert manifest.media == ["image", "video"] and manifest.labels == ["real", "fake"]
    assert 0.0 < manifest.thresholds["fake"] < 1.0
    assert {"classifier", "classifier.int8", "classifier.fp16", "detector.pnet", "detector.rnet",
            "detector.onet"} <= set(manifest.files)
    for key in ("margin", "crop_size", "min_face", "aggregation"):
        assert key in manifest.options
    card = (manifest.directory / "MODEL_CARD.md").read_text()
    assert "never measured on real deepfakes" in card and "pseudo-fakes" in card


def test_tampered_file_is_refused(deepfake_repo: Path, tmp_path: Path) -> None:
    copy = tmp_path / "deepfake" / "1"
    shutil.copytree(deepfake_repo / "deepfake" / "1", copy)
    with (copy / "pnet.onnx").open("r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelError) as err:
        Manifest.load(copy).verify()
    assert err.value.code == "model_checksum_mismatch"


def test_astronaut_is_judged_with_one_face(pipeline: DeepfakePipeline, astronaut_jpeg: bytes) -> None:
    (outcome,) = pipeline.predict([decode_image(astronaut_jpeg, 50_000_000)])
    assert outcome.label in ("real", "fake")
    assert outcome.score is not None and 0.0 <= outcome.score <= 1.0
    assert outcome.scores["fake"] + outcome.scores["real"] == pytest.approx(1.0)
    assert outcome.label == ("fake" if outcome.score >= pipeline.threshold else "real")
    evidence = outcome.evidence
    assert len(evidence["faces"]) == 1 and evidence["faces"][0]["detector_score"] > 0.9
    assert evidence["frames"] == [{"frame": 0, "score": outcome.score}]
    assert evidence["precision"] == "int8"  # CPU prefers the INT8 variant
    assert evidence["detector"] == "mtcnn"  # deepfake/1 names no detector: MTCNN, as before
    json.dumps(evidence)  # stored as JSON by the worker


def test_cat_has_no_face(pipeline: DeepfakePipeline, cat_jpeg: bytes) -> None:
    (outcome,) = pipeline.predict([decode_image(cat_jpeg, 50_000_000)])
    assert outcome.label == "no_face" and outcome.score is None
    assert outcome.evidence["frames_examined"] == 1 and outcome.evidence["faces"] == []


def test_video_is_sampled_and_aggregated(pipeline: DeepfakePipeline, short_video_mp4: bytes) -> None:
    item = decode_video(short_video_mp4, "mp4", max_seconds=10, max_frames=4)
    (outcome,) = pipeline.predict([item])
    frames = outcome.evidence["frames"]
    assert [f["frame"] for f in frames] == item.frame_indices
    assert {f["frame"] for f in outcome.evidence["faces"]} == set(item.frame_indices)
    assert outcome.evidence["frames_without_face"] == []
    assert outcome.evidence["frames_examined"] == 4
    assert outcome.evidence["aggregation"]["item"] == "confident"
    assert outcome.score == pytest.approx(confident_strategy([f["score"] for f in frames]))
    json.dumps(outcome.evidence)


def test_batch_keeps_items_apart(
    pipeline: DeepfakePipeline, astronaut_jpeg: bytes, cat_jpeg: bytes, short_video_mp4: bytes,
) -> None:
    image, cat = decode_image(astronaut_jpeg, 50_000_000), decode_image(cat_jpeg, 50_000_000)
    video = decode_video(short_video_mp4, "mp4", 10, 4)
    batch = pipeline.predict([image, cat, video])
    alone = [pipeline.predict([x])[0] for x in (image, cat, video)]
    assert [o.label for o in batch][1] == "no_face"
    for together, single in zip(batch, alone, strict=True):
        assert together.label == single.label
        assert (together.score is None) == (single.score is None)
        if single.score is not None:
            assert together.score == pytest.approx(single.score, abs=1e-5)


def test_int8_classifier_stays_close_to_fp32(deepfake_repo: Path) -> None:
    manifest = ModelRepository(deepfake_repo).manifest("deepfake", "1")
    # Crops of faces the calibration (faces 0-31) never saw: real ones and their SBI pseudo-fakes.
    check = int8_parity(manifest.path("classifier"), manifest.path("classifier.int8"),
                        calibration_crops(24, seed=7, offset=48), manifest.thresholds["fake"])
    assert check["n"] == 24
    # Stated tolerance: mean |Δp| ≤ 0.05, max |Δp| ≤ 0.5, ≥ 90 % same decision at the threshold.
    assert int8_within_tolerance(check), check


def test_fp16_classifier_stays_close_to_fp32(deepfake_repo: Path) -> None:
    # Built for CUDA; ONNX Runtime's CPU provider also runs it, which is enough to check the numbers.
    manifest = ModelRepository(deepfake_repo).manifest("deepfake", "1")
    check = int8_parity(manifest.path("classifier"), manifest.path("classifier.fp16"),
                        calibration_crops(16, seed=8, offset=48), manifest.thresholds["fake"])
    assert check["max_abs_diff"] <= 0.05 and check["agreement_at_threshold"] >= 0.9, check


def test_confident_strategy_follows_the_dfdc_rule() -> None:
    confident_fakes = [0.95] * 12 + [0.1] * 8  # 12 > 11 and 12 > 20 // 2.5
    assert confident_strategy(confident_fakes) == pytest.approx(0.95)
    too_few = [0.95] * 11 + [0.1] * 1  # only 11 confident fakes: the plain mean
    assert confident_strategy(too_few) == pytest.approx(np.mean(too_few))
    real = [0.05] * 19 + [0.9]  # 95 % below 0.2: the mean of those
    assert confident_strategy(real) == pytest.approx(0.05)
    assert aggregate([0.2, 0.6], "mean") == pytest.approx(0.4)
    assert aggregate([0.2, 0.6], "max") == pytest.approx(0.6)
    with pytest.raises(ValueError):
        aggregate([0.1], "median")
    assert frame_scores([3, 1, 3], [0.2, 0.5, 0.7]) == {1: 0.5, 3: 0.7}


def test_training_command_writes_weights(tmp_path: Path) -> None:
    from cli.train_deepfake import train_deepfake
    from ml.build.faces import write_bundled_faces

    staging = tmp_path / "all"
    faces = tmp_path / "faces"
    faces.mkdir()
    for path in write_bundled_faces(staging)[:6]:
        shutil.copy(path, faces / path.name)
    out = tmp_path / "head.npz"
    result = CliRunner().invoke(train_deepfake, ["--faces", str(faces), "--out", str(out), "--seed", "1",
                                                 "--epochs", "1"])
    assert result.exit_code == 0, result.output
    with np.load(out) as npz:
        assert npz["weight"].shape == (1280,) and np.isfinite(npz["weight"]).all()
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["seed"] == 1 and report["epochs"] == 1
    assert len(report["images"]) + len(report["skipped"]) == 6
    assert set(report["train"]).isdisjoint(report["held_out"])
    assert 0.0 <= report["held_out_auroc"] <= 1.0
    assert all(len(entry["sha256"]) == 64 for entry in report["images"])


def test_training_refuses_a_folder_without_faces(tmp_path: Path, cat_jpeg: bytes) -> None:
    from cli.train_deepfake import train_deepfake

    (tmp_path / "cat.jpg").write_bytes(cat_jpeg)
    result = CliRunner().invoke(train_deepfake, ["--faces", str(tmp_path), "--out", str(tmp_path / "h.npz")])
    assert result.exit_code != 0 and "need faces" in result.output
