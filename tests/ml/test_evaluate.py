from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.eval_cmd import eval_cmd
from ml.build.evaluate import accuracy, confusion, evaluate, load_samples
from ml.build.metrics import auroc, roc_curve
from ml.repository import ModelRepository


def test_auroc_matches_hand_computed_values() -> None:
    # Pairs (pos, neg): (0.35, 0.1) ok, (0.35, 0.4) wrong, (0.8, *) ok twice -> 3 of 4.
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    assert auroc([1, 1, 0], [0.9, 0.8, 0.1]) == pytest.approx(1.0)
    assert auroc([1, 0], [0.1, 0.9]) == pytest.approx(0.0)
    # (0.6 vs 0.6) tie = 0.5, (0.6 vs 0.2) = 1, (0.9 vs both) = 2 -> 3.5 / 4
    assert auroc([0, 0, 1, 1], [0.6, 0.2, 0.6, 0.9]) == pytest.approx(0.875)
    assert auroc([1, 1], [0.3, 0.4]) is None  # undefined with one class


def test_auroc_agrees_with_the_area_under_its_own_curve() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200) + labels * 0.3, 2)  # rounding makes ties
    fpr, tpr, _ = roc_curve(labels, scores)
    assert auroc(labels, scores) == pytest.approx(float(np.trapezoid(tpr, fpr)))


def test_roc_curve_points() -> None:
    fpr, tpr, thresholds = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert thresholds[0] == np.inf
    assert thresholds[1:].tolist() == [0.8, 0.4, 0.35, 0.1]


def test_confusion_and_accuracy() -> None:
    labels, predicted = [0, 0, 1, 1, 1], [0, 1, 1, 0, 1]
    assert confusion(labels, predicted) == {"tn": 1, "fp": 1, "fn": 1, "tp": 2}
    assert accuracy(labels, predicted) == pytest.approx(3 / 5)
    assert accuracy([], []) is None


def test_jsonl_layout_reads_paths_labels_and_text(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    lines = [{"id": 1, "img": "img/01.png", "label": 1, "text": "hello"},
             {"id": 2, "img": "img/02.png", "label": 0, "text": "world"}]
    (tmp_path / "dev.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    samples = load_samples(tmp_path / "dev.jsonl")
    assert [(s.path, s.label, s.text) for s in samples] == [
        (tmp_path / "img/01.png", 1, "hello"), (tmp_path / "img/02.png", 0, "world")]


def _write_set(root: Path) -> Path:
    """Two classes of generated images plus one corrupt file that must be counted as skipped."""
    rng = np.random.default_rng(4)
    for label, count in (("real", 4), ("fake", 3)):
        (root / label).mkdir(parents=True)
        for i in range(count):
            pixels = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).resize((160, 120)).save(root / label / f"{i}.png")
    (root / "fake" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    _write_video(root / "real" / "clip.mp4", rng)
    return root


def _write_video(path: Path, rng: np.random.Generator) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for _ in range(20):
        writer.write((rng.random((64, 96, 3)) * 255).astype(np.uint8))
    writer.release()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ml.build.builders.nsfw import build

    root = tmp_path_factory.mktemp("repo")
    build(root)
    return root


def test_evaluate_runs_the_model_in_batches(repository: Path, tmp_path: Path) -> None:
    data = _write_set(tmp_path / "set")
    pipeline = ModelRepository(repository).load("nsfw", ["CPUExecutionProvider"])
    report, rows = evaluate(pipeline, load_samples(data), dataset="gen", batch_size=3)
    assert report.total == 9 and report.evaluated == 8
    assert report.skipped == {"corrupt_image": 1}
    assert report.positive_label == "nsfw" and report.threshold == 0.8
    assert sum(report.confusion.values()) == 8
    video = next(r for r in rows if r["path"].endswith("clip.mp4"))
    assert video["label"] == 0 and video["score"] is not None  # sampled frames decoded and scored
    assert report.auroc is not None and 0.0 <= report.auroc <= 1.0
    scored = [r for r in rows if "score" in r]
    # Batching must not change scores: the same items one at a time give the same numbers.
    single, _ = evaluate(pipeline, load_samples(data), batch_size=1)
    assert single.auroc == pytest.approx(report.auroc)
    assert all(0.0 <= r["score"] <= 1.0 for r in scored)


def test_eval_command_writes_json_and_roc_png(repository: Path, tmp_path: Path) -> None:
    data = _write_set(tmp_path / "set")
    out = tmp_path / "out"
    result = CliRunner().invoke(eval_cmd, ["nsfw", "--data", str(data), "--out", str(out),
                                           "--repository", str(repository), "--providers", "CPUExecutionProvider"])
    assert result.exit_code == 0, result.output
    assert "AUROC" in result.output and "corrupt_image=1" in result.output
    report = json.loads((out / "nsfw-1.json").read_text())
    assert report["evaluated"] == 8
    assert len(report["roc"]["fpr"]) == len(report["roc"]["tpr"]) >= 2
    with Image.open(out / "nsfw-1-roc.png") as png:
        assert png.size == (480, 480)
    assert len((out / "nsfw-1.items.jsonl").read_text().splitlines()) == 9


def test_eval_command_rejects_an_empty_set(repository: Path, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    result = CliRunner().invoke(eval_cmd, ["nsfw", "--data", str(tmp_path), "--repository", str(repository)])
    assert result.exit_code != 0
    assert "no images or videos" in result.output
