from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.train_meme import train_meme
from ml.build.datasets.hateful_memes import read_split
from ml.build.training.meme_train import train
from ml.manifest import Manifest
from ml.pipelines.meme import MemePipeline
from ml.repository import ModelRepository
from ml.types import MediaItem
from tests.ml.meme_fixtures import built_repository, draw_meme, write_meme_dataset


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_repository(tmp_path_factory)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_meme_dataset(tmp_path_factory.mktemp("memes"), count=40, seed=0)


def test_reader_reads_the_layout(data: Path) -> None:
    train_records, dev_records = read_split(data, "train"), read_split(data, "dev")
    assert len(train_records) + len(dev_records) == 40 and len(dev_records) == 12
    record = dev_records[0]
    assert record.image.is_file() and record.label in (0, 1) and record.text
    assert record.load_rgb().shape == (256, 256, 3)


def test_reader_rejects_bad_records(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text('{"id": 1, "img": "img/missing.png", "label": 0, "text": "x"}\n')
    with pytest.raises(ValueError, match="missing"):
        read_split(tmp_path, "train")
    (tmp_path / "dev.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match=r"dev\.jsonl:1"):
        read_split(tmp_path, "dev")
    with pytest.raises(ValueError, match="does not exist"):
        read_split(tmp_path, "test")


def test_train_writes_a_loadable_version_with_dev_metrics(repo: Path, data: Path, tmp_path: Path) -> None:
    # A repository of our own beside the shared one: meme/1 linked in, the trained meme/2 written here,
    # so no other test ever sees a version this test made.
    (tmp_path / "repo" / "meme").mkdir(parents=True)
    (tmp_path / "repo" / "meme" / "1").symlink_to(repo / "meme" / "1")
    out = tmp_path / "repo" / "meme" / "2"
    report = train(data, out, seed=0, epochs=60, base=repo / "meme" / "1")
    assert report.seconds > 0
    assert report.train_size == 28 and report.dev_size == 12 and report.features == 901
    assert report.dev_auroc is not None and report.dev_auroc >= 0.8  # the labels follow the caption words
    # Accuracy at the untuned 0.5 threshold of a head fitted on 28 memes moves by a meme or two between
    # builds, so it is not asserted as a level; below, it must be what the written version really does.
    saved = json.loads((out / "train_report.json").read_text())
    assert saved["dev_auroc"] == report.dev_auroc and saved["data_sha256"]

    manifest = Manifest.load(out)
    manifest.verify()
    assert "fusion_head" in manifest.files and "embedder.int8" not in manifest.files
    assert manifest.provenance["training"]["dev_accuracy"] == report.dev_accuracy
    assert "dev AUROC" in (out / "MODEL_CARD.md").read_text()
    with pytest.raises(ValueError, match="already holds"):
        train(data, out, seed=0, epochs=1, base=repo / "meme" / "1")

    pipeline = ModelRepository(tmp_path / "repo").load("meme", ["CPUExecutionProvider"], threads=1)  # newest: 2
    assert isinstance(pipeline, MemePipeline) and pipeline.version == "2" and pipeline.head is not None
    hostile, benign = pipeline.predict([
        MediaItem(kind="image", frames=[draw_meme("kill all of them", seed=7)], text="kill all of them"),
        MediaItem(kind="image", frames=[draw_meme("my cat loves cardboard boxes", seed=8)]),
    ])
    assert hostile.evidence["fusion"]["kind"] == "logistic_head"
    assert benign.evidence["text_source"] == "ocr"
    assert hostile.score is not None and benign.score is not None and hostile.score > benign.score
    dev = read_split(data, "dev")
    results = pipeline.predict([MediaItem(kind="image", frames=[r.load_rgb()], text=r.text) for r in dev])
    right = [(res.score is not None and res.score >= pipeline.head.threshold) == bool(r.label)
             for res, r in zip(results, dev, strict=True)]
    assert sum(right) / len(dev) == pytest.approx(report.dev_accuracy)


def test_cli_command(repo: Path, tmp_path: Path) -> None:
    data = write_meme_dataset(tmp_path / "small", count=10, seed=1)
    out = tmp_path / "meme" / "3"
    result = CliRunner().invoke(train_meme, ["--data", str(data), "--out", str(out), "--seed", "1",
                                             "--epochs", "5", "--base", str(repo / "meme" / "1"), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert '"dev_auroc"' in result.output and (out / "fusion_head.npz").is_file()
    bad = CliRunner().invoke(train_meme, ["--data", str(tmp_path), "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "train.jsonl" in bad.output
