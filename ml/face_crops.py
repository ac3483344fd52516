"""Square face crops with a margin, as the DFDC winner cut them, and the classifier's input tensor.

The margin matters: blending artefacts of a face swap sit on the face's *boundary* (jaw, hairline,
cheeks), so the classifier must see some background around the detector's tight box. The crop is a
square of side ``(1 + margin) x max(box width, box height)`` around the box centre; parts beyond the
frame are black, never stretched, so the face keeps its aspect ratio.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

DEFAULT_MARGIN = 0.3
DEFAULT_SIZE = 224  # EfficientNet-Lite0's native input


def square_box(box: Sequence[float], margin: float = DEFAULT_MARGIN) -> tuple[int, int, int]:
    """(left, top, side) of the square crop around ``box`` = (x1, y1, x2, y2); may extend past the frame."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    side = max(2, round(max(x2 - x1, y2 - y1) * (1.0 + margin)))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return round(cx - side / 2.0), round(cy - side / 2.0), side


def face_crop(
    frame: np.ndarray, box: Sequence[float], margin: float = DEFAULT_MARGIN, size: int = DEFAULT_SIZE,
    landmarks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The (size, size, 3) uint8 crop, and ``landmarks`` (K, 2) moved into the crop's pixel coordinates."""
    left, top, side = square_box(box, margin)
    height, width = frame.shape[:2]
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    sx1, sy1 = max(0, left), max(0, top)
    sx2, sy2 = min(width, left + side), min(height, top + side)
    if sx2 > sx1 and sy2 > sy1:
        canvas[sy1 - top: sy2 - top, sx1 - left: sx2 - left] = frame[sy1:sy2, sx1:sx2]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    crop = cv2.resize(canvas, (size, size), interpolation=interpolation)
    moved = None
    if landmarks is not None:
        moved = (np.asarray(landmarks, dtype=np.float64) - [left, top]) * (size / side)
    return crop, moved


def to_batch(crops: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 3, H, W) float32 in 0..255: the classifier ONNX normalises inside the graph."""
    if not crops:
        raise ValueError("no crops to batch")
    return np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2), dtype=np.float32)
