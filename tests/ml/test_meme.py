from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ml.build.metrics import auroc
from ml.fusion import BranchScores, FusionHead, FusionRule
from ml.manifest import Manifest
from ml.pipelines.meme import MemePipeline, clip_preprocess
from ml.repository import ModelRepository
from ml.runtime import RowRunner
from ml.types import MediaItem
from tests.ml.meme_fixtures import built_repository, draw_meme
from tests.support.claims_cuda import ClaimsCuda


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_repository(tmp_path_factory)


@pytest.fixture(scope="module")
def pipeline(repo: Path) -> MemePipeline:
    loaded = ModelRepository(repo).load("meme", ["CPUExecutionProvider"], threads=1, version="1")
    assert isinstance(loaded, MemePipeline)
    return loaded


def test_built_manifests_verify_and_cover_every_model_file(repo: Path) -> None:
    for name in ("text", "meme"):
        manifest = Manifest.load(repo / name / "1")
        manifest.verify()
        onnx_files = {p.name for p in manifest.directory.glob("*.onnx")}
        assert onnx_files == {Path(e["path"]).name for e in manifest.files.values() if e["path"].endswith(".onnx")}
        card = (manifest.directory / "MODEL_CARD.md").read_text()
        assert "not evaluated on Hateful Memes" in card or name == "text"
    meme = Manifest.load(repo / "meme" / "1")
    assert {"ocr_det", "ocr_rec", "nsfw", "image_embedder", "hatesonar"} <= set(meme.files)
    assert "fusion_head" not in meme.files and meme.thresholds["hateful"] == 0.5
    assert "hand-set rule, not trained" in (meme.directory / "MODEL_CARD.md").read_text()


def test_supplied_text_and_ocr_text_end_to_end(pipeline: MemePipeline) -> None:
    hostile = draw_meme("you people should", "all die", seed=1)
    items = [
        MediaItem(kind="image", frames=[hostile]),  # caption read by OCR
        MediaItem(kind="image", frames=[hostile], text="what a lovely afternoon"),  # supplied wins
        MediaItem(kind="image", frames=[hostile], text="you people should all die"),
    ]
    ocr, supplied_benign, supplied_hostile = pipeline.predict(items)
    assert ocr.evidence["text_source"] == "ocr"
    assert {"people", "should", "die"} <= set(ocr.evidence["text"].lower().split())
    assert len(ocr.evidence["ocr_lines"]) >= 2
    assert supplied_benign.evidence["text_source"] == "supplied"
    assert supplied_benign.evidence["text"] == "what a lovely afternoon" and supplied_benign.evidence["ocr_lines"] == []
    for outcome in (ocr, supplied_benign, supplied_hostile):
        assert outcome.label in ("hateful", "not_hateful")
        assert outcome.score == pytest.approx(outcome.scores["hateful"])
        assert outcome.evidence["fusion"]["kind"] == "rule" and outcome.evidence["threshold"] == 0.5
        assert set(outcome.evidence["branches"]) == {"text", "image"}
        json.dumps(outcome.evidence)
    assert supplied_hostile.score > supplied_benign.score
    assert ocr.score == pytest.approx(supplied_hostile.score, abs=0.05)  # same caption, read vs given


def test_no_text_and_no_frames(pipeline: MemePipeline) -> None:
    blank = np.full((200, 300, 3), 90, np.uint8)
    no_text, whitespace, no_frames = pipeline.predict([
        MediaItem(kind="image", frames=[blank]), MediaItem(kind="image", frames=[blank], text="  "),
        MediaItem(kind="image", frames=[]),
    ])
    for outcome in (no_text, whitespace):
        assert outcome.label == "no_text" and outcome.score is None
        assert 0.0 <= outcome.scores["nsfw"] <= 1.0
        assert outcome.evidence["text_source"] == "ocr" and "not judged" in outcome.evidence["note"]
    assert no_frames.label == "no_frames" and no_frames.score is None
    assert pipeline.predict([]) == []


def test_rule_is_monotone_and_never_makes_benign_text_hateful() -> None:
    rule = FusionRule(threshold=0.5, image_boost=1.0)
    hate = np.array([0.0, 0.05, 0.3, 0.3, 0.6, 0.9])
    nsfw = np.array([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    zeros = np.zeros(6)
    scores = rule.score(BranchScores(hate=hate, offensive=zeros, neither=zeros, profane=zeros, nsfw=nsfw))
    assert scores[0] == 0.0 and scores[1] < rule.threshold  # an explicit image alone is not hate
    assert scores[3] > scores[2] and scores[3] >= rule.threshold > scores[2]  # but it worsens a hostile caption
    assert scores[4] >= rule.threshold and np.all((scores >= 0) & (scores <= 1)) and scores[5] == 1.0
    assert FusionRule.from_manifest({"hateful": 0.4}, {"fusion_rule": {"image_boost": 0.5}}).image_boost == 0.5


def test_head_round_trip_and_auroc(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    head = FusionHead(mean=np.zeros(901, np.float32), scale=np.ones(901, np.float32),
                      weights=rng.normal(size=901).astype(np.float32), bias=0.1, threshold=0.4)
    head.save(tmp_path / "h.npz")
    loaded = FusionHead.load(tmp_path / "h.npz")
    x = rng.normal(size=(5, 901)).astype(np.float32)
    assert np.allclose(loaded.score_features(x), head.score_features(x)) and loaded.threshold == pytest.approx(0.4)
    np.savez(tmp_path / "bad.npz", mean=np.zeros(3), scale=np.ones(3), weights=np.ones(3), bias=0.0, threshold=0.5)
    with pytest.raises(ValueError):
        FusionHead.load(tmp_path / "bad.npz")
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert auroc(np.array([1, 1]), np.array([0.2, 0.3])) is None


def test_clip_preprocess_shapes() -> None:
    for shape in ((100, 300, 3), (512, 256, 3), (224, 224, 3)):
        out = clip_preprocess(np.zeros(shape, np.uint8))
        assert out.shape == (3, 224, 224) and out.dtype == np.float32


def test_on_cuda_the_image_branch_pads_its_calls_and_scores_the_same(pipeline: MemePipeline) -> None:
    """On CUDA the open_nsfw call is padded to a power of two rows, as the deepfake classifier's. No GPU
    here: the real CPU session is wrapped to report CUDA (tests.support.claims_cuda)."""
    frames = [draw_meme("caption", f"number {seed}", seed=seed) for seed in range(3)]
    branch = pipeline.image_branch
    on_cpu = branch.nsfw
    assert not on_cpu.pad
    plain = branch.nsfw_scores(frames)
    calls: list[int] = []
    try:
        branch.nsfw = RowRunner(ClaimsCuda(on_cpu.session, calls), on_cpu.max_rows)  # type: ignore[arg-type]
        padded = branch.nsfw_scores(frames)
    finally:
        branch.nsfw = on_cpu
    assert calls == [4] and padded.shape == (3,)
    assert padded == pytest.approx(plain, abs=1e-6)
