"""meme/2: OCR (or the supplied caption) → text/2's calibrated hate stack; the image is evidence only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml.manifest import VALIDATED, Manifest
from ml.pipelines.meme import MemePipeline
from ml.pipelines.text import TextPipeline
from ml.repository import ModelRepository
from ml.types import MediaItem
from tests.ml.meme_fixtures import built_repository, draw_meme


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_repository(tmp_path_factory, ("text", "meme", "text_v2", "meme_v2"))


@pytest.fixture(scope="module")
def pipeline(repo: Path) -> MemePipeline:
    loaded = ModelRepository(repo).load("meme", ["CPUExecutionProvider"], threads=1, version="2")
    assert isinstance(loaded, MemePipeline)
    return loaded


def test_manifest_verifies_carries_validation_and_no_clip(repo: Path) -> None:
    manifest = Manifest.load(repo / "meme" / "2")
    manifest.verify()
    assert {"hate_encoder", "char_model", "stacker", "ocr_det", "ocr_rec", "nsfw"} <= set(manifest.files)
    assert "image_embedder" not in manifest.files and manifest.options["fusion"] == "text_hate"
    validation = manifest.quality()
    assert validation["status"] == VALIDATED and "memes not evaluated" in validation["summary"]
    assert validation["datasets"][0]["auroc"] > 0.5
    assert "caption's calibrated P(hateful)" in (manifest.directory / "MODEL_CARD.md").read_text()
    assert ModelRepository(repo).manifest("meme").version == "2"


def test_dehumanising_meme_is_flagged_and_benign_is_not(pipeline: MemePipeline) -> None:
    hateful = draw_meme("immigrants are vermin", "exterminate them all", seed=3)
    benign = draw_meme("when the coffee kicks in", "and monday is fine", seed=4)
    vermin, calm = pipeline.predict([MediaItem(kind="image", frames=[hateful]),
                                     MediaItem(kind="image", frames=[benign])])
    assert vermin.evidence["text_source"] == "ocr" and "vermin" in vermin.evidence["text"].lower()
    assert vermin.label == "hateful", vermin.evidence
    assert calm.label == "not_hateful", calm.evidence
    assert vermin.score is not None and calm.score is not None and vermin.score > calm.score
    for outcome in (vermin, calm):
        assert outcome.evidence["fusion"]["kind"] == "text_hate"
        assert outcome.score == pytest.approx(outcome.evidence["branches"]["text"]["hate_stack"])
        assert 0.0 <= outcome.evidence["branches"]["image"]["nsfw"] <= 1.0
        json.dumps(outcome.evidence)


def test_caption_score_equals_text_v2_for_the_same_text(pipeline: MemePipeline, repo: Path) -> None:
    text = ModelRepository(repo).load("text", ["CPUExecutionProvider"], threads=1, version="2")
    assert isinstance(text, TextPipeline)
    caption = "those people are parasites and should be wiped out"
    meme = pipeline.predict([MediaItem(kind="image", frames=[draw_meme("hello", seed=5)], text=caption)])[0]
    assert meme.evidence["text_source"] == "supplied"
    assert meme.score == pytest.approx(text.predict_texts([caption])[0].scores["hate"], abs=1e-5)


def test_no_text_is_not_judged(pipeline: MemePipeline) -> None:
    import numpy as np

    outcome = pipeline.predict([MediaItem(kind="image", frames=[np.full((200, 300, 3), 90, np.uint8)])])[0]
    assert outcome.label == "no_text" and outcome.score is None


def test_meme_v1_keeps_its_rule(repo: Path) -> None:
    v1 = ModelRepository(repo).load("meme", ["CPUExecutionProvider"], threads=1, version="1")
    assert isinstance(v1, MemePipeline)
    outcome = v1.predict([MediaItem(kind="image", frames=[draw_meme("hello", seed=6)], text="what a nice day")])[0]
    assert outcome.evidence["fusion"]["kind"] == "rule" and "hate_stack" not in outcome.evidence["branches"]["text"]
