"""Shared fixtures for the ml tests: media generated here (skimage sample images, OpenCV-written video)
and the deepfake model version built once per session. Nothing is downloaded."""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image


def jpeg(pixels: np.ndarray, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0, fourcc: str = "mp4v") -> bytes:
    """Encode RGB frames with OpenCV and return the file's bytes."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path.suffix}"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path.read_bytes()


def astronaut_frames(count: int, size: int = 384) -> list[np.ndarray]:
    """The astronaut's portrait panning slowly: a real face in every frame, moving a pixel per frame."""
    from skimage import data

    image = data.astronaut()
    return [np.ascontiguousarray(image[40 + i: 40 + i + size, 60 + i: 60 + i + size]) for i in range(count)]


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def astronaut_jpeg(astronaut_rgb: np.ndarray) -> bytes:
    return jpeg(astronaut_rgb)


@pytest.fixture(scope="session")
def cat_jpeg() -> bytes:
    from skimage import data

    return jpeg(data.chelsea())


@pytest.fixture(scope="session")
def short_video_mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """2 s at 10 fps (20 frames, 384x384, MPEG-4 Part 2 in MP4) of the astronaut's face."""
    return write_video(tmp_path_factory.mktemp("video") / "short.mp4", astronaut_frames(20))


@pytest.fixture(scope="session")
def deepfake_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding deepfake/1, built once per session (~20-40 s on 2 cores)."""
    from ml.build.builders.deepfake import build

    prebuilt = os.environ.get("TEST_MODEL_REPOSITORY")  # `make test` builds the real repository once
    if prebuilt and (Path(prebuilt) / "deepfake").is_dir():
        return Path(prebuilt)
    root = tmp_path_factory.mktemp("deepfake_repository")
    build(root, force=True)
    return root
