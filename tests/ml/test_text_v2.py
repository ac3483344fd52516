"""text/2 built from the committed weights into a temporary repository: the trained, calibrated hate score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ml.manifest import VALIDATED, Manifest
from ml.pipelines.text import TextPipeline, has_hate_head
from ml.repository import ModelRepository
from tests.ml.meme_fixtures import built_repository

# Written for this test (not rows of the training pool).
HATEFUL = [
    "Refugees are rats and we should exterminate every last one of them.",
    "Muslims are filthy animals who do not deserve to live among decent people.",
    "Women are too stupid to think, they should be owned by men.",
    "I want to hurt every gay person I meet, they are diseased freaks.",
    "Black people are subhuman and should be sent back in chains.",
]
BENIGN = [
    "My grandmother grows tomatoes and basil in her small garden.",
    "The train to Leeds was delayed by twenty minutes this morning.",
    "Our mosque is hosting an open day with tea and cake on Sunday.",
    "She explained how vaccines train the immune system.",
    "I don't agree with people who say refugees are rats; they are people like us.",
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_repository(tmp_path_factory, ("text", "text_v2"))


@pytest.fixture(scope="module")
def pipeline(repo: Path) -> TextPipeline:
    loaded = ModelRepository(repo).load("text", ["CPUExecutionProvider"], threads=1, version="2")
    assert isinstance(loaded, TextPipeline)
    return loaded


def test_manifest_verifies_carries_validation_and_is_the_live_text_version(repo: Path) -> None:
    manifest = Manifest.load(repo / "text" / "2")
    manifest.verify()
    assert has_hate_head(manifest) and not has_hate_head(Manifest.load(repo / "text" / "1"))
    assert ModelRepository(repo).manifest("text").version == "2"
    validation = manifest.quality()
    assert validation["status"] == VALIDATED and validation["date"]
    first = validation["datasets"][0]
    assert first["n"] > 1000 and 0.5 < first["auroc"] <= 1.0
    lo, hi = first["auroc_ci"]
    assert lo <= first["auroc"] <= hi
    assert first["by_group"]  # per source
    card = (manifest.directory / "MODEL_CARD.md").read_text()
    assert "Trained by deepscreen" in card and "CC-BY-4.0" in card and "CDLA-Permissive-2.0" in card
    assert (manifest.directory / "licences" / "DATA_LICENCES.md").is_file()
    checks = manifest.provenance["checks"]["hate_encoder"]
    assert checks["max_abs_diff_logit"] < 1e-4


def test_hateful_sentences_score_above_benign_and_score_is_the_probability(pipeline: TextPipeline) -> None:
    outcomes = pipeline.predict_texts(HATEFUL + BENIGN)
    hate = np.array([o.scores["hate"] for o in outcomes])
    for outcome in outcomes:
        assert outcome.score == pytest.approx(outcome.scores["hate"])
        assert 0.0 <= outcome.score <= 1.0
        assert set(outcome.scores) == {"hate", "offensive", "profane", "clean"}
        json.dumps(outcome.evidence)
    assert hate[:5].min() > hate[5:].max()  # every hateful sentence above every benign one
    assert all(o.label == "hate" for o in outcomes[:5])
    assert all(o.label == "clean" for o in outcomes[5:9])
    stack = outcomes[0].evidence["models"]["hate_stack"]
    assert set(stack["inputs"]) == {"minilm", "char", "hatesonar_hate", "hatesonar_offensive", "profanity"}


def test_obfuscated_spelling_still_scores_high(pipeline: TextPipeline) -> None:
    plain, l33t, benign = pipeline.predict_texts(["immigrants are vermin, kill them all",
                                                   "1mmigr4nts are v3rm1n, k1ll them all",
                                                   "the vermin in the barn ate all the grain"])
    assert l33t.scores["hate"] > benign.scores["hate"]
    assert plain.scores["hate"] > benign.scores["hate"]


def test_batch_equals_one_by_one_and_empty_text(pipeline: TextPipeline) -> None:
    texts = [HATEFUL[0], BENIGN[0], "fuck this", ""]
    batch = pipeline.predict_texts(texts)
    for text, outcome in zip(texts[:3], batch[:3], strict=True):
        single = pipeline.predict_texts([text])[0]
        assert single.label == outcome.label
        assert single.scores["hate"] == pytest.approx(outcome.scores["hate"], abs=1e-5)
    assert batch[3].label == "empty" and batch[3].score is None


def test_text_v1_still_loads_with_its_own_rule(repo: Path) -> None:
    v1 = ModelRepository(repo).load("text", ["CPUExecutionProvider"], threads=1, version="1")
    assert isinstance(v1, TextPipeline) and v1.branch.head is None
    outcome = v1.predict_texts([HATEFUL[0]])[0]
    assert "hate_stack" not in outcome.evidence["models"]
    assert outcome.score == pytest.approx(max(outcome.scores[k] for k in ("hate", "offensive", "profane")))
