"""BlazeFace (mediapipe's single-shot face detector) on fixed-shape, batched ONNX.

Every frame, whatever its size, is letterboxed into the model's square input (aspect kept, zero padded),
so the whole batch — all frames of all items a worker took — goes through ONE session call of one
shape: cheap on the CPU and what a GPU needs (no re-planning per shape, as MTCNN's pyramid forces).
The graph (ml.build.blazeface_export) decodes mediapipe's SSD anchors itself and returns per anchor a
score and a box (centre, size, six keypoints) as fractions of the square; here we keep the anchors
above the score threshold, blend overlapping ones with mediapipe's weighted NMS, and map boxes and
keypoints back to frame pixels.

``margin`` shrinks the picture inside the square (a border of ``margin`` times the long side on each side):
the short-range model's anchors expect a face to cover well under the whole input, so a face that fills
its photo (a passport crop, LFW's 25 px faces) is found more often with some border around it, at the
price of missing more small faces (measured in bench/face_detectors.py; the shipped margin is 0).

``box_adjust`` (dx, dy, sx, sy) moves and scales BlazeFace's square, eyes-to-chin box into another
detector's geometry: centre += (dx·w, dy·h), size scaled by (sx, sy). The deepfake classifier was trained on
crops around MTCNN's taller box, so the build fits this on LFW faces to make crops look alike.
"""

from __future__ import annotations

import cv2
import numpy as np
from onnxruntime import InferenceSession

from ml.face_detection.common import Face, check_frame
from ml.runtime import padded_rows

# mediapipe's keypoint order; "right" is the subject's right (on the image's left in a frontal photo).
LANDMARKS = ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear_tragion", "left_ear_tragion")


class _Pass:
    """One fixed-shape run of the net: its session, square side and score threshold."""

    def __init__(self, session: InferenceSession, threshold: float) -> None:
        shape = session.get_inputs()[0].shape
        if shape[1] != shape[2] or shape[3] != 3:
            raise ValueError(f"expected a square (N, S, S, 3) input, got {shape}")
        self.session, self.size, self.threshold = session, int(shape[1]), float(threshold)


class BlazeFace:
    """``session``: the exported graph (input ``image`` uint8 (N, S, S, 3), outputs ``scores``, ``boxes``).

    ``score_threshold`` is mediapipe's min_score_thresh (0.5 short range); ``nms_threshold`` its
    weighted-NMS IoU (0.3); ``min_face`` drops faces whose longer side is below it in frame pixels;
    ``max_batch`` bounds one session call (memory), larger batches are chunked.

    ``fine_session`` (optional) is the same net exported at twice the side: the short-range model only
    sees faces from ~15 % of the frame's long side up, so frames in which the first pass finds no face
    are searched again at 2x (faces down to ~7 %), all such frames of the batch in one call. A frame's
    result depends on that frame alone, so batching never changes it; a frame whose face the first pass
    finds (the common case) costs one small pass. ``fine_threshold`` is higher than mediapipe's: at 2x
    the net fires on face-like texture more often (measured: bench/face_detectors.py).

    ``pad_batches`` (on for a session on CUDA) pads each call to a power-of-two batch with blank squares,
    so the GPU sees a few shapes instead of one per batch size; blank rows' outputs are never read.
    """

    name = "blazeface"
    LANDMARKS = LANDMARKS

    def __init__(
        self, session: InferenceSession, score_threshold: float = 0.5, nms_threshold: float = 0.3,
        margin: float = 0.0, min_face: float = 0.0, max_batch: int = 64, max_faces: int = 32,
        box_adjust: tuple[float, float, float, float] | None = None,
        fine_session: InferenceSession | None = None, fine_threshold: float = 0.7, pad_batches: bool = False,
    ) -> None:
        self.coarse = _Pass(session, score_threshold)
        self.fine = _Pass(fine_session, fine_threshold) if fine_session is not None else None
        self.size = self.coarse.size
        self.nms_threshold = float(nms_threshold)
        self.margin = float(margin)
        self.min_face = float(min_face)
        self.max_batch = max(1, int(max_batch))
        self.max_faces = int(max_faces)
        self.box_adjust = tuple(float(v) for v in box_adjust) if box_adjust else None
        self.pad_batches = pad_batches

    def letterbox(self, frame: np.ndarray, out: np.ndarray) -> tuple[float, float, int, int]:
        """Draw ``frame`` centred into ``out`` (S, S, 3, zeroed); (x scale, y scale, left, top) map frame
        pixels to square pixels (the picture covers exactly w x h pixels, so each axis has its own factor)."""
        check_frame(frame)
        size = out.shape[0]
        height, width = frame.shape[:2]
        inner = size / (1.0 + 2.0 * self.margin)
        scale = inner / max(height, width)
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        left, top = (size - w) // 2, (size - h) // 2
        interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        out[top: top + h, left: left + w] = cv2.resize(frame, (w, h), interpolation=interpolation)
        return w / width, h / height, left, top

    def detect_batch(self, frames: list[np.ndarray]) -> list[list[Face]]:
        """Per frame, its faces, most confident first."""
        found = self._run(self.coarse, frames)
        if self.fine is not None:
            again = [k for k, faces in enumerate(found) if not faces]
            if again:
                for k, faces in zip(again, self._run(self.fine, [frames[k] for k in again]), strict=True):
                    found[k] = faces
        return found

    def detect(self, frame: np.ndarray) -> list[Face]:
        return self.detect_batch([frame])[0]

    def _run(self, run: _Pass, frames: list[np.ndarray]) -> list[list[Face]]:
        """One session call per ``max_batch`` frames of one pass."""
        found: list[list[Face]] = []
        for start in range(0, len(frames), self.max_batch):
            chunk = frames[start: start + self.max_batch]
            rows = padded_rows(len(chunk), self.max_batch) if self.pad_batches else len(chunk)
            batch = np.zeros((rows, run.size, run.size, 3), dtype=np.uint8)
            placements = [self.letterbox(frame, batch[i]) for i, frame in enumerate(chunk)]
            scores, boxes = run.session.run(["scores", "boxes"], {"image": batch})
            for k, placement in enumerate(placements):
                found.append(self._faces(run, scores[k], boxes[k], placement, chunk[k].shape[:2]))
        return found

    def _faces(
        self, run: _Pass, scores: np.ndarray, boxes: np.ndarray, placement: tuple[float, float, int, int],
        shape: tuple[int, ...],
    ) -> list[Face]:
        sx, sy, left, top = placement
        height, width = shape[0], shape[1]
        # Faces centred in the letterbox's padding are artefacts of its edge, never faces.
        cx, cy = boxes[:, 0] * run.size, boxes[:, 1] * run.size
        keep = np.flatnonzero((scores >= run.threshold) & (cx >= left) & (cx <= left + width * sx)
                              & (cy >= top) & (cy <= top + height * sy))
        if keep.size == 0:
            return []
        raw = boxes[keep].astype(np.float64) * run.size  # square pixels
        cx, cy, w, h = raw[:, 0], raw[:, 1], raw[:, 2], raw[:, 3]
        # rows: x1, y1, x2, y2, then the six keypoints (x, y), all in frame pixels
        rows = np.empty((len(keep), 16))
        rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3] = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        rows[:, 4:] = raw[:, 4:]
        rows[:, 0::2] = (rows[:, 0::2] - left) / sx
        rows[:, 1::2] = (rows[:, 1::2] - top) / sy
        faces = []
        for row, score in weighted_nms(rows, scores[keep].astype(np.float64), self.nms_threshold)[: self.max_faces]:
            if self.box_adjust is not None:
                row[:4] = adjust_box(row[:4], self.box_adjust)
            x1, y1 = max(0.0, float(row[0])), max(0.0, float(row[1]))
            x2, y2 = min(float(width), float(row[2])), min(float(height), float(row[3]))
            if x2 - x1 <= 1 or y2 - y1 <= 1 or max(x2 - x1, y2 - y1) < self.min_face:
                continue
            faces.append(Face(box=(x1, y1, x2, y2), score=score, landmarks=row[4:].reshape(6, 2).copy()))
        return faces


def weighted_nms(rows: np.ndarray, scores: np.ndarray, threshold: float) -> list[tuple[np.ndarray, float]]:
    """mediapipe's WEIGHTED non-maximum suppression, most confident first.

    Take the best remaining detection and every remaining one whose IoU with it exceeds ``threshold``
    (itself included); the output is their score-weighted mean box and keypoints with the best one's
    score. BlazeFace fires on several neighbouring anchors per face, so blending them steadies the box
    from frame to frame instead of picking one anchor's jittery guess.
    """
    order = np.argsort(-scores, kind="stable")
    rows, scores = rows[order], scores[order]
    area = np.maximum(rows[:, 2] - rows[:, 0], 0) * np.maximum(rows[:, 3] - rows[:, 1], 0)
    alive = np.ones(len(rows), dtype=bool)
    out: list[tuple[np.ndarray, float]] = []
    for i in range(len(rows)):
        if not alive[i]:
            continue
        w = np.clip(np.minimum(rows[i, 2], rows[:, 2]) - np.maximum(rows[i, 0], rows[:, 0]), 0, None)
        h = np.clip(np.minimum(rows[i, 3], rows[:, 3]) - np.maximum(rows[i, 1], rows[:, 1]), 0, None)
        inter = w * h
        union = area[i] + area - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        group = alive & (overlap > threshold)
        group[i] = True
        weights = scores[group]
        out.append(((rows[group] * weights[:, None]).sum(axis=0) / weights.sum(), float(scores[i])))
        alive &= ~group
    return out


def adjust_box(box: np.ndarray, adjust: tuple[float, ...]) -> np.ndarray:
    """(x1, y1, x2, y2) with its centre moved by (dx·w, dy·h) and its size scaled by (sx, sy)."""
    dx, dy, sx, sy = adjust
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = (box[0] + box[2]) / 2 + dx * w, (box[1] + box[3]) / 2 + dy * h
    return np.array([cx - w * sx / 2, cy - h * sy / 2, cx + w * sx / 2, cy + h * sy / 2])
