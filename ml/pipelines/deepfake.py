"""Deepfake screening: faces per frame → square crops → one classifier call → per-face, per-frame, per-item.

Decoding happens before (the caller hands in MediaItems); detection and cropping are per frame, the
classifier runs once for every crop of the whole batch (split only above ``max_batch`` crops to bound
memory). An item in which no frame shows a face gets the explicit label ``no_face`` and no score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.aggregation import aggregate, frame_scores
from ml.face_crops import face_crop, to_batch
from ml.face_detection.common import Face
from ml.face_detection.factory import build_detector
from ml.manifest import Manifest
from ml.pipelines.base import Pipeline
from ml.types import MediaItem, Outcome


@dataclass
class _Found:
    item: int
    frame: int  # the frame's index in the source (MediaItem.frame_indices)
    face: Face


class DeepfakePipeline(Pipeline):
    def __init__(self, manifest: Manifest, providers: list[str], threads: int = 1) -> None:
        super().__init__(manifest, providers, threads)
        options = manifest.options
        self.detector = build_detector(options, lambda role: self.session(role)[0])
        self._classifier, self.precision = self.session("classifier")
        self._input = self._classifier.get_inputs()[0].name
        self.margin = float(options.get("margin", 0.3))
        self.crop_size = int(options.get("crop_size", 224))
        self.rule = str(options.get("aggregation", "confident"))
        self.max_batch = int(options.get("max_batch", 64))
        self.threshold = float(manifest.thresholds.get("fake", 0.5))

    def _classify(self, crops: list[np.ndarray]) -> np.ndarray:
        out = [
            self._classifier.run(None, {self._input: to_batch(crops[i: i + self.max_batch])})[0]
            for i in range(0, len(crops), self.max_batch)
        ]
        return np.concatenate(out).reshape(-1).astype(np.float64)

    def predict(self, items: list[MediaItem]) -> list[Outcome]:
        # Every frame of every item in one detector call: a fixed-shape detector runs them as one batch.
        where = [(index, int(frame_index), frame) for index, item in enumerate(items)
                 for frame_index, frame in zip(item.frame_indices, item.frames, strict=True)]
        detected = self.detector.detect_batch([frame for _, _, frame in where]) if where else []
        found: list[_Found] = []
        crops: list[np.ndarray] = []
        for (index, frame_index, frame), faces in zip(where, detected, strict=True):
            for face in faces:
                crop, _ = face_crop(frame, face.box, self.margin, self.crop_size)
                crops.append(crop)
                found.append(_Found(index, frame_index, face))
        scores = self._classify(crops) if crops else np.empty(0)
        return [
            self._outcome(item, [(f, float(s)) for f, s in zip(found, scores, strict=True) if f.item == index])
            for index, item in enumerate(items)
        ]

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
