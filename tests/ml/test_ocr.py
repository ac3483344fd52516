from __future__ import annotations

import re

import numpy as np
import pytest

from ml.ocr import OcrEngine, OcrResult, bundled_model_paths, shared_engine
from tests.ml.meme_fixtures import draw_meme


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.fixture(scope="module")
def engine() -> OcrEngine:
    return OcrEngine(bundled_model_paths(), threads=1)


def test_reads_the_caption_of_a_drawn_meme(engine: OcrEngine) -> None:
    frame = draw_meme("when the code", "works offline", seed=3)
    result = engine.read(frame)
    assert isinstance(result, OcrResult)
    assert {"when", "the", "code", "works", "offline"} <= _words(result.text)
    assert len(result.lines) >= 2
    for line in result.lines:
        assert line["text"].strip()
        assert 0.5 <= line["confidence"] <= 1.0
        assert len(line["box"]) == 4 and all(len(point) == 2 for point in line["box"])
    # reading order: the top caption's line comes before the bottom one
    tops = [min(y for _, y in line["box"]) for line in result.lines]
    assert tops == sorted(tops)


def test_image_without_text_reads_empty(engine: OcrEngine) -> None:
    result = engine.read(np.full((240, 320, 3), 127, np.uint8))
    assert result.text == "" and result.lines == []


def test_greyscale_and_small_frames(engine: OcrEngine) -> None:
    grey = draw_meme("hello world", seed=5)[:, :, 0]
    assert "hello" in _words(engine.read(grey).text)
    assert engine.read(np.zeros((8, 8, 3), np.uint8)).text == ""
    with pytest.raises(ValueError):
        engine.read(np.zeros((4, 4, 5), np.uint8))


def test_engine_is_built_lazily_and_shared_per_process() -> None:
    engine = OcrEngine(threads=2)
    assert engine._engine is None  # nothing loaded until the first read
    first = shared_engine(bundled_model_paths(), threads=1)
    assert shared_engine(bundled_model_paths(), threads=1) is first
    assert shared_engine(bundled_model_paths(), threads=2) is not first
