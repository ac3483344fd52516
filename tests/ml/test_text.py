from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from ml.build.builders.text import PROBES, profanity_corpus
from ml.manifest import Manifest
from ml.pipelines.text import TextPipeline
from ml.repository import ModelRepository
from ml.text_models import clean_text, non_latin_share
from ml.types import MediaItem
from tests.ml.meme_fixtures import built_repository

HATEFUL = "you people should all die"
BENIGN = "what a lovely afternoon in the park"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_repository(tmp_path_factory, ("text",))


@pytest.fixture(scope="module")
def pipeline(repo: Path) -> TextPipeline:
    loaded = ModelRepository(repo).load("text", ["CPUExecutionProvider"], threads=1, version="1")
    assert isinstance(loaded, TextPipeline)
    return loaded


def test_manifest_verifies_and_graphs_need_no_locale(repo: Path) -> None:
    manifest = Manifest.load(repo / "text" / "1")
    manifest.verify()
    assert {"hatesonar", "profanity", "embedder", "tokenizer"} <= set(manifest.files)
    for role in ("hatesonar", "profanity"):
        ops = {node.op_type for node in onnx.load(str(manifest.path(role))).graph.node}
        assert "StringNormalizer" not in ops  # the node that needs en_US.UTF-8
    assert (manifest.directory / "MODEL_CARD.md").read_text().count("not") >= 1


def test_profanity_onnx_matches_the_sklearn_original(pipeline: TextPipeline) -> None:
    import profanity_check.profanity_check as pc

    rng = np.random.default_rng(0)
    vocab = sorted(pc.vectorizer.vocabulary_)
    shuffled = [" ".join(rng.choice(vocab, size=int(rng.integers(1, 12)))) for _ in range(200)]
    texts = [*profanity_corpus()[::3], *shuffled, "FÜCK ÜBER straße", "İstanbul Σίσυφος"]
    expected = pc.predict_prob(texts)
    got = pipeline.branch.profanity.predict(texts)
    assert np.abs(got - expected).max() < 1e-5


def test_hateful_sentence_scores_above_benign(pipeline: TextPipeline) -> None:
    hateful, benign = pipeline.predict_texts([HATEFUL, BENIGN])
    assert hateful.scores["hate"] > benign.scores["hate"]
    assert hateful.score is not None and benign.score is not None
    assert hateful.score > benign.score
    assert benign.label == "clean"
    profane = pipeline.predict_texts(["fuck this shit, you idiot"])[0]
    assert profane.label in ("offensive", "profane") and profane.scores["profane"] > 0.8


def test_batch_equals_one_by_one_and_evidence_is_json(pipeline: TextPipeline) -> None:
    texts = [HATEFUL, BENIGN, "fuck this", "Grüße aus München"]
    batch = pipeline.predict_texts(texts)
    for text, outcome in zip(texts, batch, strict=True):
        single = pipeline.predict_texts([text])[0]
        assert single.label == outcome.label
        for key, value in outcome.scores.items():
            assert single.scores[key] == pytest.approx(value, abs=1e-5)
        json.dumps(outcome.evidence)
        assert set(outcome.scores) == {"hate", "offensive", "profane", "clean"}


def test_empty_nul_long_and_non_english(pipeline: TextPipeline) -> None:
    empty, blank, nuls, long, japanese = pipeline.predict_texts(
        ["", "   \n", "\x00\x00", "spam " * 4000, "これは日本語の文章です"])
    for outcome in (empty, blank, nuls):
        assert outcome.label == "empty" and outcome.score is None
    assert nuls.evidence["control_chars_replaced"] == 2
    assert long.evidence["truncated_to_chars"] == 10_000
    assert long.evidence["embedding"]["truncated"] is True
    assert long.evidence["embedding"]["tokens"] > long.evidence["embedding"]["max_tokens"]
    assert "256" in long.evidence["embedding"]["note"]
    assert "language_warning" in japanese.evidence and japanese.score is not None
    mixed = pipeline.predict_texts(["a\x00b shit"])[0]
    assert mixed.evidence["control_chars_replaced"] == 1 and mixed.scores["profane"] > 0.5


def test_predict_items_uses_item_text(pipeline: TextPipeline) -> None:
    items = [MediaItem(kind="image", frames=[], text=HATEFUL), MediaItem(kind="image", frames=[], text=None)]
    first, second = pipeline.predict(items)
    assert first.scores["hate"] == pytest.approx(pipeline.predict_texts([HATEFUL])[0].scores["hate"])
    assert second.label == "empty"


def test_embedder_runs_int8_on_cpu_and_keeps_meaning(pipeline: TextPipeline) -> None:
    embedder = pipeline.branch.embedder
    assert embedder is not None and embedder.precision == "int8"
    vectors = embedder.predict(["a cat sits on the mat", "a kitten is sitting on a rug", "stock prices fell"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    evidence = pipeline.predict_texts([HATEFUL])[0].evidence["embedding"]
    assert evidence["precision"] == "int8" and "nearest_hate_prototype" in evidence


def test_text_helpers() -> None:
    assert clean_text("a\x00b\tc\u0007") == ("a b\tc ", 2)
    assert non_latin_share("abc") == 0.0 and non_latin_share("日本") == 1.0 and non_latin_share("123") == 0.0
    assert "" in PROBES  # the build-time checks cover the empty string
