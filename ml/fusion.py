"""Meme fusion: branch scores → P(hateful).

The shipped fusion is a hand-set rule, not a trained model: no labelled hateful-meme data can be
had offline. ``FusionHead`` is the trainable alternative (ml.build.training.meme_train): a logistic head
over branch scores and both embeddings, stored as an ``.npz`` of plain arrays and run with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCORE_FEATURES = ("hate", "offensive", "neither", "profane", "nsfw")
TEXT_EMBEDDING_DIM = 384
IMAGE_EMBEDDING_DIM = 512


@dataclass
class BranchScores:
    """Branch outputs for a batch of memes that have text (rows aligned)."""

    hate: np.ndarray
    offensive: np.ndarray
    neither: np.ndarray
    profane: np.ndarray
    nsfw: np.ndarray
    text_embedding: np.ndarray | None = None  # (N, 384)
    image_embedding: np.ndarray | None = None  # (N, 512)
    hate_calibrated: np.ndarray | None = None  # (N,) meme/2: the text/2 stack's P(hateful) for the caption


def feature_matrix(scores: BranchScores) -> np.ndarray:
    """[hate, offensive, neither, profane, nsfw, text embedding (384), image embedding (512)]."""
    if scores.text_embedding is None or scores.image_embedding is None:
        raise ValueError("the fusion head needs both embeddings")
    columns = np.stack([getattr(scores, name) for name in SCORE_FEATURES], axis=1)
    return np.concatenate([columns, scores.text_embedding, scores.image_embedding], axis=1).astype(np.float32)


@dataclass
class FusionRule:
    """score = min(1, hate * (1 + image_boost * nsfw)); hateful when score >= threshold.

    Why this shape: the text models are the only hate signal we have. An explicit image multiplies an
    already hostile caption's score (up to 1 + image_boost times), but a caption the text model finds
    harmless (hate near 0) stays near 0 whatever the image, and the score stays in [0, 1].
    """

    threshold: float = 0.5
    image_boost: float = 1.0

    @classmethod
    def from_manifest(cls, thresholds: dict[str, float], options: dict[str, Any]) -> FusionRule:
        return cls(threshold=float(thresholds.get("hateful", 0.5)),
                   image_boost=float(options.get("fusion_rule", {}).get("image_boost", 1.0)))

    def score(self, scores: BranchScores) -> np.ndarray:
        hate = np.clip(scores.hate.astype(np.float64), 0.0, 1.0)
        nsfw = np.clip(scores.nsfw.astype(np.float64), 0.0, 1.0)
        return np.clip(hate * (1.0 + self.image_boost * nsfw), 0.0, 1.0)

    def describe(self) -> dict[str, Any]:
        return {"kind": "rule", "formula": "min(1, hate * (1 + image_boost * nsfw))",
                "image_boost": self.image_boost, "threshold": self.threshold, "trained": False}


@dataclass
class FusionHead:
    """Logistic regression on standardised features: p = sigmoid(((x - mean) / scale) · w + b)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float = 0.5
    needs_embeddings: bool = True

    @classmethod
    def load(cls, path: Path) -> FusionHead:
        with np.load(path, allow_pickle=False) as data:
            head = cls(mean=data["mean"].astype(np.float32), scale=data["scale"].astype(np.float32),
                       weights=data["weights"].astype(np.float32), bias=float(data["bias"]),
                       threshold=float(data["threshold"]))
        expected = len(SCORE_FEATURES) + TEXT_EMBEDDING_DIM + IMAGE_EMBEDDING_DIM
        if not (head.weights.shape == head.mean.shape == head.scale.shape == (expected,)):
            raise ValueError(f"{path}: head has {head.weights.shape} weights, expected ({expected},)")
        if not np.isfinite(head.weights).all() or not np.isfinite(head.bias):
            raise ValueError(f"{path}: head has non-finite weights")
        return head

    def save(self, path: Path) -> None:
        with path.open("wb") as fh:
            np.savez(fh, mean=self.mean, scale=self.scale, weights=self.weights,
                     bias=np.float32(self.bias), threshold=np.float32(self.threshold))

    def logits(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.weights + self.bias

    def score_features(self, features: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.clip(self.logits(features).astype(np.float64), -60, 60)))

    def score(self, scores: BranchScores) -> np.ndarray:
        return self.score_features(feature_matrix(scores))

    def describe(self) -> dict[str, Any]:
        return {"kind": "logistic_head", "features": [*SCORE_FEATURES, "text_embedding[384]",
                                                       "image_embedding[512]"],
                "threshold": self.threshold, "trained": True}


@dataclass
class TextHateRule:
    """meme/2: score = the caption's calibrated P(hateful) from the text/2 hate stack; the image is evidence.

    Why: no trained multimodal head exists, and the hand-set image boost of meme/1 was never measured;
    the text head was (its figures are in the manifest). A meme whose text is hateful is hateful.
    """

    threshold: float = 0.5

    def score(self, scores: BranchScores) -> np.ndarray:
        if scores.hate_calibrated is None:
            raise ValueError("the text_hate fusion needs the hate stack's calibrated score")
        return np.clip(scores.hate_calibrated.astype(np.float64), 0.0, 1.0)

    def describe(self) -> dict[str, Any]:
        return {"kind": "text_hate", "formula": "calibrated P(hateful) of the caption (text/2 hate stack)",
                "image": "evidence only (open_nsfw), not in the score", "threshold": self.threshold,
                "trained": True}
