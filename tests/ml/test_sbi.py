"""Self-blended images: a pseudo-fake changes the face region only, reproducibly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ml.build.training.sbi import blend_mask, face_outline, self_blend

# Five landmarks of a centred, upright face in a 160 px crop (eyes, nose, mouth corners).
LANDMARKS = np.array([[60, 65], [100, 65], [80, 88], [64, 110], [96, 110]], dtype=float)


@pytest.fixture()
def face() -> np.ndarray:
    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8), (7, 7), 0)
    cv2.ellipse(image, (80, 85), (40, 55), 0, 0, 360, (200, 160, 140), -1)
    return image


def test_shape_dtype_and_mask_range(face: np.ndarray) -> None:
    out = self_blend(face, LANDMARKS, np.random.default_rng(0))
    assert out.image.shape == face.shape and out.image.dtype == np.uint8
    assert out.mask.shape == face.shape[:2] and out.mask.dtype == np.float32
    assert out.mask.min() >= 0.0 and out.mask.max() <= 1.0


@pytest.mark.parametrize("seed", range(8))
def test_changes_only_inside_the_mask(face: np.ndarray, seed: int) -> None:
    out = self_blend(face, LANDMARKS, np.random.default_rng(seed))
    outside = out.mask == 0
    assert outside.any() and (~outside).any()
    assert np.array_equal(out.image[outside], face[outside])
    changed = np.any(out.image != face, axis=2)
    assert changed.any()
    assert not (changed & outside).any()
    # The blend sits on the face: most of the mask lies inside the estimated face outline.
    hull = np.zeros(face.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(face_outline(LANDMARKS)).astype(np.int32)), 1)
    weight = out.mask.sum()
    assert out.mask[hull > 0].sum() / weight > 0.7


def test_reproducible_with_a_seed(face: np.ndarray) -> None:
    a = self_blend(face, LANDMARKS, np.random.default_rng(42))
    b = self_blend(face, LANDMARKS, np.random.default_rng(42))
    c = self_blend(face, LANDMARKS, np.random.default_rng(43))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)


def test_input_is_not_modified(face: np.ndarray) -> None:
    before = face.copy()
    self_blend(face, LANDMARKS, np.random.default_rng(0))
    assert np.array_equal(face, before)


def test_outline_surrounds_the_landmarks() -> None:
    hull = cv2.convexHull(np.round(face_outline(LANDMARKS)).astype(np.float32))
    for x, y in LANDMARKS:
        assert cv2.pointPolygonTest(hull, (float(x), float(y)), False) >= 0


def test_mask_blend_ratios_vary() -> None:
    peaks = {round(float(blend_mask((160, 160), LANDMARKS, np.random.default_rng(s)).max()), 2) for s in range(40)}
    assert len(peaks) >= 3 and max(peaks) == 1.0  # full blends and partial ones (0.25 … 0.75)


def test_rejects_non_rgb() -> None:
    with pytest.raises(ValueError):
        self_blend(np.zeros((10, 10), np.uint8), LANDMARKS, np.random.default_rng(0))
