"""Deepfake screening: faces per frame → square crops → one classifier call → per-face, per-frame, per-item.

Decoding happens before (the caller hands in MediaItems). The face detector the manifest names
(ml.face_detection: BlazeFace batched, or MTCNN) gets every frame of every item in one call; crops are
cut per face straight into one batch; the classifier runs once for every crop of the whole batch (split
only above ``max_batch`` crops to bound memory). So an item's result does not depend on its batch
mates. An item in which no frame shows a face gets the explicit label ``no_face`` and no score.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ml.aggregation import aggregate, frame_scores
from ml.face_crops import face_crop, square_box
from ml.face_detection.common import Face
from ml.face_detection.factory import build_detector
from ml.manifest import Manifest
from ml.pipelines.base import Pipeline
from ml.runtime import RowRunner
from ml.types import MediaItem, Outcome


@dataclass
class _Found:
    item: int
    frame: int  # the frame's index in the source (MediaItem.frame_indices)
    face: Face


def _nchw(batch: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 → (N, 3, H, W) float32 in 0..255, as ml.face_crops.to_batch (the ONNX normalises)."""
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


class DeepfakePipeline(Pipeline):
    def __init__(self, manifest: Manifest, providers: list[str], threads: int = 1) -> None:
        super().__init__(manifest, providers, threads)
        options = manifest.options
        self.detector = build_detector(options, lambda role: self.session(role)[0])
        classifier, self.precision = self.session("classifier")
        self.margin = float(options.get("margin", 0.3))
        self.crop_size = int(options.get("crop_size", 224))
        self.rule = str(options.get("aggregation", "confident"))
        self.classifier = RowRunner(classifier, int(options.get("max_batch", 64)))  # padded on CUDA
        self.threshold = float(manifest.thresholds.get("fake", 0.5))
        self.last_timings: dict[str, float] = {}

    def _classify(self, batch: np.ndarray) -> np.ndarray:
        """P(fake) per crop of ``batch`` (N, H, W, 3) uint8."""
        return self.classifier(batch, prepare=_nchw).reshape(-1).astype(np.float64)

    def _crop_into(self, frame: np.ndarray, box: tuple[float, float, float, float], out: np.ndarray) -> None:
        """Write the face's square crop into ``out`` (size, size, 3): resized straight from the frame when
        the square lies inside it (no intermediate copy); ml.face_crops pads the rare square that does not."""
        left, top, side = square_box(box, self.margin)
        height, width = frame.shape[:2]
        if left >= 0 and top >= 0 and left + side <= width and top + side <= height:
            interpolation = cv2.INTER_AREA if side > self.crop_size else cv2.INTER_CUBIC
            out[...] = cv2.resize(frame[top: top + side, left: left + side], (self.crop_size, self.crop_size),
                                  interpolation=interpolation)
        else:
            out[...] = face_crop(frame, box, self.margin, self.crop_size)[0]

    def predict(self, items: list[MediaItem]) -> list[Outcome]:
        # Every frame of every item in one detector call: a fixed-shape detector runs them as one batch.
        start = time.perf_counter()
        where = [(index, int(frame_index), frame) for index, item in enumerate(items)
                 for frame_index, frame in zip(item.frame_indices, item.frames, strict=True)]
        detected = self.detector.detect_batch([frame for _, _, frame in where]) if where else []
        sources = [(frame, _Found(index, frame_index, face))
                   for (index, frame_index, frame), faces in zip(where, detected, strict=True) for face in faces]
        detect_end = time.perf_counter()
        # Crops go straight into one uint8 batch; the classifier runs once over all faces of all items.
        batch = np.empty((len(sources), self.crop_size, self.crop_size, 3), dtype=np.uint8)
        for k, (frame, f) in enumerate(sources):
            self._crop_into(frame, f.face.box, batch[k])
        found = [f for _, f in sources]
        crop_end = time.perf_counter()
        scores = self._classify(batch) if found else np.empty(0)
        # Stage seconds of the last call (bench/models.py reports them).
        self.last_timings = {"detect": detect_end - start, "crop": crop_end - detect_end,
                             "classify": time.perf_counter() - crop_end}
        per_item: list[list[tuple[_Found, float]]] = [[] for _ in items]
        for f, score in zip(found, scores, strict=True):
            per_item[f.item].append((f, float(score)))
        return [self._outcome(item, faces) for item, faces in zip(items, per_item, strict=True)]

    def _outcome(self, item: MediaItem, faces: list[tuple[_Found, float]]) -> Outcome:
        common: dict[str, Any] = {
            "frames_examined": len(item.frames), "threshold": self.threshold, "precision": self.precision,
            "detector": self.detector.name,
        }
        if not faces:
            return Outcome(label="no_face", score=None, evidence={**common, "faces": [], "frames": []})
        per_frame = frame_scores([f.frame for f, _ in faces], [s for _, s in faces])
        common["frames_without_face"] = [int(i) for i in item.frame_indices if int(i) not in per_frame]
        # One frame (an image): its score is the max over its faces; the rule only matters across frames.
        score = aggregate(list(per_frame.values()), self.rule) if len(per_frame) > 1 else next(iter(per_frame.values()))
        return Outcome(
            label="fake" if score >= self.threshold else "real",
            score=score,
            scores={"fake": score, "real": 1.0 - score},
            evidence={
                **common,
                "faces": [
                    {"frame": f.frame, "box": [round(float(v), 1) for v in f.face.box], "score": s,
                     "detector_score": f.face.score}
                    for f, s in faces
                ],
                "frames": [{"frame": frame, "score": s} for frame, s in per_frame.items()],
                "aggregation": {"frame": "max over faces", "item": self.rule if len(per_frame) > 1 else "single frame"},
            },
        )
