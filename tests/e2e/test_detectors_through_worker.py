"""Both detector families, the synthetic-image model and text screening through the real API and a
real Celery worker process (service mode), on generated media."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.ml.conftest import astronaut_frames, write_video
from tests.ml.meme_fixtures import draw_meme
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _screen(client, auth, data: bytes, name: str, models: str, **form) -> dict:  # type: ignore[no-untyped-def]
    response = client.post("/v1/jobs", headers=auth, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(data), name), "models": models, **form})
    assert response.status_code == 202, response.get_data(as_text=True)
    url = response.get_json()["status_url"]

    def done():  # type: ignore[no-untyped-def]
        job = client.get(url, headers=auth).get_json()
        return job if job["status"] in ("succeeded", "failed") else None

    return wait_for(done, 180, what=f"{name} to be screened")


def test_face_photo_gets_deepfake_synthetic_and_meme_verdicts(client, auth, worker):  # type: ignore[no-untyped-def]
    from skimage import data

    job = _screen(client, auth, _jpeg(data.astronaut()), "astronaut.jpg", "deepfake,synthetic,meme")
    assert job["status"] == "succeeded", job
    deepfake = job["results"]["deepfake"]
    assert deepfake["label"] in ("real", "fake") and 0.0 <= deepfake["score"] <= 1.0
    assert len(deepfake["evidence"]["faces"]) == 1
    assert 0.0 <= job["results"]["synthetic"]["score"] <= 1.0
    assert job["results"]["meme"]["label"] in ("no_text", "not_hateful", "hateful")


def test_cat_photo_has_no_face(client, auth, worker):  # type: ignore[no-untyped-def]
    from skimage import data

    job = _screen(client, auth, _jpeg(data.chelsea()), "cat.jpg", "deepfake")
    assert job["results"]["deepfake"]["label"] == "no_face"
    assert job["results"]["deepfake"]["score"] is None


def test_video_frames_are_sampled_and_aggregated(client, auth, worker, tmp_path):  # type: ignore[no-untyped-def]
    video = write_video(tmp_path / "face.mp4", astronaut_frames(20))
    job = _screen(client, auth, video, "face.mp4", "deepfake")
    assert job["status"] == "succeeded", job
    evidence = job["results"]["deepfake"]["evidence"]
    assert job["media"]["kind"] == "video"
    assert len(evidence["frames"]) >= 2
    assert evidence["aggregation"]


def test_meme_text_is_read_by_ocr_or_taken_as_supplied(client, auth, worker):  # type: ignore[no-untyped-def]
    meme = _jpeg(draw_meme("WHEN THE CODE", "WORKS OFFLINE"))
    read = _screen(client, auth, meme, "meme.jpg", "meme")
    evidence = read["results"]["meme"]["evidence"]
    assert evidence["text_source"] == "ocr"
    assert "offline" in evidence["text"].lower()
    given = _screen(client, auth, meme, "meme.jpg", "meme", text="a caption we typed")
    assert given["results"]["meme"]["evidence"]["text_source"] == "supplied"


def test_text_screening_is_synchronous_through_a_worker(client, auth, worker):  # type: ignore[no-untyped-def]
    response = client.post("/v1/text", headers=auth,
                           json={"texts": ["have a lovely day", "you people should all die", ""]})
    assert response.status_code == 200, response.get_data(as_text=True)
    results = response.get_json()["results"]
    assert len(results) == 3
    assert results[1]["score"] > results[0]["score"]
    assert results[2]["label"] == "empty"
    too_many = client.post("/v1/text", headers=auth, json={"texts": ["x"] * 101})
    assert too_many.status_code == 413
    assert too_many.get_json()["error"]["code"] == "too_many_texts"
    long = client.post("/v1/text", headers=auth, json={"texts": ["x" * 10_001]})
    assert long.status_code == 413 and long.get_json()["error"]["code"] == "text_too_long"
