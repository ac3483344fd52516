"""Benchmark inputs made here, seeded, with distinct bytes (no known-verdict shortcut on the road).

- ``face_photos``: 512x512 JPEGs with one real face each: skimage's astronaut, matplotlib's Grace Hopper
  (both public domain) and skimage's 100 LFW faces pasted at 150-220 px onto a blurred colour field,
  every one with a seeded shift/scale/rotation, brightness jitter, Gaussian noise and JPEG quality.
- ``faceless_images``: small noise JPEGs on which the deepfake model finds no face (a near-free model
  for measuring the road itself).

Speed inputs only: nothing here says anything about accuracy.
"""

from __future__ import annotations

import io
from functools import cache

import cv2
import numpy as np
from PIL import Image

SIZE = 512


@cache
def _portraits() -> list[np.ndarray]:
    from skimage import data

    portraits = [np.ascontiguousarray(data.astronaut())]
    try:
        import matplotlib.cbook as cbook

        hopper = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))
        side = min(hopper.shape[:2])
        portraits.append(cv2.resize(hopper[:side, :side], (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    except Exception:  # matplotlib is a build extra; the astronaut and LFW suffice
        pass
    return portraits


@cache
def _lfw() -> np.ndarray:
    from skimage import data

    return (data.lfw_subset()[:100] * 255).astype(np.uint8)  # the first 100 are faces, 25x25 grey


def _jpeg(pixels: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    angle, scale = rng.uniform(-6, 6), rng.uniform(0.9, 1.1)
    matrix = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), angle, scale)
    matrix[:, 2] = matrix[:, 2] + rng.uniform(-24, 24, 2)
    moved = cv2.warpAffine(image, matrix, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT)
    gain = rng.uniform(0.85, 1.15, 3)
    noisy = moved.astype(np.float32) * gain + rng.normal(0, rng.uniform(2, 6), moved.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _pasted_lfw(index: int, rng: np.random.Generator) -> np.ndarray:
    field = rng.integers(40, 220, (16, 16, 3), dtype=np.uint8)
    background = cv2.GaussianBlur(cv2.resize(field, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC), (0, 0), 9)
    side = int(rng.integers(150, 221))
    face = cv2.resize(_lfw()[index % 100], (side, side), interpolation=cv2.INTER_CUBIC)
    tint = rng.uniform(0.8, 1.1, 3)
    top, left = (int(v) for v in rng.integers(20, SIZE - side - 20, 2))
    background[top: top + side, left: left + side] = np.clip(face[..., None] * tint, 0, 255).astype(np.uint8)
    return background


def face_photos(count: int, seed: int = 0) -> list[bytes]:
    """``count`` distinct 512 px one-face JPEGs: a third portraits, two thirds LFW faces, seeded."""
    rng = np.random.default_rng(seed)
    portraits = _portraits()
    out = []
    for i in range(count):
        base = portraits[(i // 3) % len(portraits)] if i % 3 == 0 else _pasted_lfw(i, rng)
        out.append(_jpeg(_jitter(base, rng), int(rng.integers(85, 96))))
    return out


def faceless_images(count: int, size: int = 64, seed: int = 0) -> list[bytes]:
    """``count`` distinct small noise JPEGs (no face: the deepfake model answers ``no_face`` cheaply)."""
    rng = np.random.default_rng(seed)
    return [_jpeg(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), 90) for _ in range(count)]
