"""Self-Blended Images (Shiohara & Yamasaki, CVPR 2022): pseudo-fakes made from one real face.

A face swap pastes a source face into a target frame and blends the seam. SBI imitates the *traces*
of that (colour and sharpness mismatch, a slightly misaligned face, a soft blend boundary) without a
second identity: the source is an augmented copy of the target itself. A classifier trained on real
vs self-blended faces learns the seam, not any one generator, which is why it transfers across data sets.

Steps for one face (image + landmarks):

1. source = copy of target; colour jitter (per-channel shift, hue/saturation/brightness/contrast)
   and a frequency change (down-up resampling or sharpening) are applied to it;
2. the source is shifted and rescaled a little (the "landmark mismatch" of a real swap);
3. the mask is the convex hull of a face outline estimated from the landmarks, randomly grown or
   shrunk, jittered, blurred with a random kernel and scaled by a blend ratio in {0.25 … 1};
4. blended = mask x source + (1 - mask) x target.

The paper uses 81 dlib landmarks; MTCNN gives five, so the outline is extrapolated from eyes, nose and
mouth with fixed ratios. Pixels where the mask is exactly 0 keep the target's value bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # the paper's choice: full blends are most common


@dataclass
class SelfBlend:
    """A pseudo-fake: the blended image and the float mask (H, W) in [0, 1] that made it."""

    image: np.ndarray
    mask: np.ndarray


def face_outline(landmarks: np.ndarray) -> np.ndarray:
    """Points around the whole face (brow, temples, cheeks, chin) from five MTCNN landmarks (x, y)."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    left_eye, right_eye, nose, mouth_l, mouth_r = pts
    eyes = (left_eye + right_eye) / 2.0
    mouth = (mouth_l + mouth_r) / 2.0
    across = right_eye - left_eye  # interocular vector
    down = mouth - eyes  # eyes → mouth
    if np.linalg.norm(down) < 1e-6:  # degenerate landmarks: assume an upright face
        down = np.array([0.0, np.linalg.norm(across) or 1.0])
    return np.array([
        left_eye - 0.45 * across - 0.75 * down,  # brow, outer left
        eyes - 0.85 * down,  # mid brow
        right_eye + 0.45 * across - 0.75 * down,
        right_eye + 0.65 * across + 0.1 * down,  # temple
        mouth_r + 0.45 * across + 0.1 * down,  # cheek
        mouth_r + 0.1 * across + 0.75 * down,  # jaw
        mouth + 0.9 * down,  # chin
        mouth_l - 0.1 * across + 0.75 * down,
        mouth_l - 0.45 * across + 0.1 * down,
        left_eye - 0.65 * across + 0.1 * down,
        nose,
    ])


def blend_mask(shape: tuple[int, int], landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft face mask (H, W) float32 in [0, 1], deformed at random so no two seams look alike."""
    height, width = shape
    outline = face_outline(landmarks)
    centre = outline.mean(axis=0)
    scale = rng.uniform(0.8, 1.1)  # grow or shrink the region, as swaps cover more or less of the face
    jitter = rng.normal(0.0, 0.04, size=outline.shape) * np.ptp(outline, axis=0).max()
    points = centre + (outline - centre) * scale + jitter
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    mask: np.ndarray = np.zeros((height, width), dtype=np.float32)
    cv2.fillConvexPoly(mask, hull, 1.0)
    face_side = max(8.0, float(np.ptp(points, axis=0).max()))
    kernel = int(face_side * rng.uniform(0.05, 0.25)) | 1  # odd
    if kernel >= 3:
        # Blurring spreads the mask outwards; the paper erodes first so the blend stays on the face.
        eroded = cv2.erode(mask, np.ones((kernel // 2 + 1, kernel // 2 + 1), np.uint8))
        mask = cv2.GaussianBlur(eroded if eroded.any() else mask, (kernel, kernel), 0)
    mask[mask < 1e-3] = 0.0  # the blur's far tail is below one grey level: keep those pixels untouched
    ratio = BLEND_RATIOS[int(rng.integers(len(BLEND_RATIOS)))]
    return np.clip(mask * ratio, 0.0, 1.0).astype(np.float32)


def _colour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = image.astype(np.float32) + rng.uniform(-20, 20, size=3).astype(np.float32)  # RGB shift
    hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-5, 5)) % 180
    hsv[..., 1] *= rng.uniform(0.8, 1.2)
    hsv[..., 2] *= rng.uniform(0.85, 1.15)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    contrast = rng.uniform(0.85, 1.15)
    return np.clip((out - out.mean()) * contrast + out.mean(), 0, 255).astype(np.uint8)


def _frequency(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    if rng.random() < 0.5:
        factor = rng.uniform(0.35, 0.8)
        small = cv2.resize(image, (max(2, int(width * factor)), max(2, int(height * factor))),
                           interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    blurred = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.8, 2.0))
    amount = rng.uniform(0.3, 1.0)
    return cv2.addWeighted(image, 1 + amount, blurred, -amount, 0)


def _misalign(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift by up to 3 % and rescale by ±5 % around the centre, replicating the border."""
    height, width = image.shape[:2]
    scale = rng.uniform(0.95, 1.05)
    dx, dy = rng.uniform(-0.03, 0.03, size=2) * (width, height)
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), 0.0, scale)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def self_blend(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> SelfBlend:
    """One SBI pseudo-fake of ``image`` (H, W, 3) uint8 with five ``landmarks`` (x, y) in its coordinates.

    Pure: the same image, landmarks and generator state give the same result.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    target = image
    source = image.copy()
    # The paper applies the colour / frequency change to source *or* target; changing the target
    # would also alter pixels outside the mask, so we change only the source (same seam, cleaner test).
    source = _colour(source, rng)
    if rng.random() < 0.7:
        source = _frequency(source, rng)
    source = _misalign(source, rng)
    mask = blend_mask(image.shape[:2], landmarks, rng)
    m = mask[..., None]
    blended = m * source.astype(np.float32) + (1.0 - m) * target.astype(np.float32)
    out = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return SelfBlend(image=out, mask=mask)
