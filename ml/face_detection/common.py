"""What every face detector hands out, and the interface the deepfake pipeline calls.

A detector takes a *batch* of frames (all frames of all items a worker batched) so that a fixed-shape
model can run them in one session call; a detector that cannot batch (MTCNN's pyramid) loops inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class Face:
    """One detected face: box (x1, y1, x2, y2) in frame pixels, detector confidence, landmarks (K, 2) as
    (x, y) in frame pixels (MTCNN: 5 points, BlazeFace: 6; see each detector's ``LANDMARKS``)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


class FaceDetector(Protocol):
    """``detect_batch``: RGB uint8 (H, W, 3) frames in; per frame, its faces, most confident first."""

    name: str

    def detect_batch(self, frames: list[np.ndarray]) -> list[list[Face]]: ...


def check_frame(frame: np.ndarray) -> None:
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB frame (H, W, 3), got {frame.shape}")


def iou(a: tuple[float, ...] | np.ndarray, b: tuple[float, ...] | np.ndarray) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes (continuous coordinates)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def nms(boxes: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression over rows (x1, y1, x2, y2, score, …).

    Boxes are inclusive pixel boxes (MTCNN's convention: width = x2 - x1 + 1); ``method="min"`` divides
    the overlap by the smaller box, which drops a box nested inside a better one.
    """
    if boxes.size == 0:
        return np.empty(0, dtype=np.int64)
    x1, y1, x2, y2, score = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3], boxes[:, 4]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(score)
    keep: list[int] = []
    while order.size:
        i = int(order[-1])
        keep.append(i)
        rest = order[:-1]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return np.asarray(keep, dtype=np.int64)
