from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ml.build.builders.synthetic import build
from ml.manifest import Manifest
from ml.pipelines.synthetic import SyntheticPipeline, preprocess
from ml.repository import ModelRepository
from ml.types import MediaItem


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return build(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def pipeline(manifest: Manifest) -> SyntheticPipeline:
    loaded = ModelRepository(manifest.directory.parent.parent).load("synthetic", ["CPUExecutionProvider"])
    assert isinstance(loaded, SyntheticPipeline)
    return loaded


def _images() -> list[np.ndarray]:
    """A drawn scene, a smooth gradient and a noisy photo-like field, in different sizes and aspects."""
    rng = np.random.default_rng(2)
    scene = Image.new("RGB", (320, 240), (90, 140, 210))
    draw = ImageDraw.Draw(scene)
    draw.ellipse((40, 60, 160, 180), fill=(240, 200, 40))
    draw.rectangle((180, 120, 300, 230), fill=(60, 120, 50))
    gradient = np.linspace(0, 255, 200 * 300 * 3).reshape(200, 300, 3).astype(np.uint8)
    noisy = np.clip(rng.normal(128, 40, (180, 140, 3)), 0, 255).astype(np.uint8)
    return [np.asarray(scene), gradient, noisy]


def test_manifest_covers_the_copied_weights(manifest: Manifest) -> None:
    manifest.verify()
    assert set(manifest.files) == {"encoder", "probe"}
    assert manifest.labels == ["real", "synthetic"]
    assert 0.0 < manifest.thresholds["synthetic"] < 1.0
    card = (manifest.directory / "MODEL_CARD.md").read_text()
    assert "0.82" in card and "THEIR self-reported" in card and "MIT" in card


def test_scores_are_probabilities(pipeline: SyntheticPipeline) -> None:
    outcomes = pipeline.predict([MediaItem(kind="image", frames=[img]) for img in _images()])
    assert len(outcomes) == 3
    for outcome in outcomes:
        assert outcome.score is not None and 0.0 <= outcome.score <= 1.0
        assert outcome.label == ("synthetic" if outcome.score >= pipeline.threshold else "real")
        assert outcome.scores["real"] == pytest.approx(1.0 - outcome.score)
        assert outcome.evidence["band"] in {"likely_real", "inconclusive", "likely_synthetic"}
    assert len({round(o.score or 0, 6) for o in outcomes}) == 3  # different images, different scores


def test_batch_results_equal_single_results(pipeline: SyntheticPipeline) -> None:
    items = [MediaItem(kind="image", frames=[img]) for img in _images()]
    batched = [o.score for o in pipeline.predict(items)]
    single = [pipeline.predict([item])[0].score for item in items]
    assert batched == pytest.approx(single, abs=1e-6)


def test_video_score_is_the_mean_of_its_frames(pipeline: SyntheticPipeline) -> None:
    frames = _images()
    video = MediaItem(kind="video", frames=frames, frame_indices=[0, 10, 20], fps=10.0)
    outcome = pipeline.predict([video])[0]
    per_frame = [pipeline.predict([MediaItem(kind="image", frames=[f])])[0].score for f in frames]
    assert outcome.score == pytest.approx(float(np.mean(per_frame)), abs=1e-6)
    assert [f["frame"] for f in outcome.evidence["frame_scores"]] == [0, 10, 20]
    assert outcome.evidence["aggregation"] == "mean"


def test_an_item_without_frames_is_not_guessed(pipeline: SyntheticPipeline) -> None:
    outcomes = pipeline.predict([MediaItem(kind="video", frames=[], frame_indices=[]),
                                 MediaItem(kind="image", frames=[_images()[0]])])
    assert outcomes[0].label == "no_frames" and outcomes[0].score is None
    assert outcomes[1].score is not None


def test_preprocess_keeps_aspect_and_normalises() -> None:
    wide = np.zeros((100, 400, 3), dtype=np.uint8)
    x = preprocess(wide)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    # Black pixels land at -mean/std for every channel.
    np.testing.assert_allclose(x[:, 0, 0], [-1.7922626, -1.7520971, -1.4802198], rtol=1e-5)


def test_model_feeds_match_what_predict_feeds(pipeline: SyntheticPipeline) -> None:
    img = _images()[0]
    feeds = pipeline.model_feeds("encoder", [MediaItem(kind="image", frames=[img])])
    assert len(feeds) == 1
    np.testing.assert_array_equal(next(iter(feeds[0].values()))[0], preprocess(img))
