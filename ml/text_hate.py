"""text/2's hate parts that run in numpy: the hashed character n-gram model and the calibrated stacker.

Why characters: hate that dodges word lists (l33t "k1ll", spacing "k i l l", dots, emoji) still shares
character n-grams with its plain spelling; the "squeezed" view (letters and digits only) maps
"k.i.l.l" and "k i l l" onto "kill". The features are hashed (crc32, stable across platforms and
Python versions, unlike ``hash``), so no vocabulary ships: only one weight per bucket.

Why a stacker: the fine-tuned MiniLM, the char model and the two pretrained TF-IDF models err in
different places; a logistic regression over their logits, fitted on rows none of them was trained on,
combines them and is at the same time the calibration (Platt scaling), so ``hate`` is P(hateful).
The same featuriser runs at training time (ml.build.training.text_char), so the two cannot drift.
"""

from __future__ import annotations

import json
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CHAR_BUCKETS = 1 << 18
CHAR_ORDERS = (2, 3, 4, 5)
SQUEEZED_ORDERS = (3, 4, 5)
STACK_FEATURES = ("minilm", "char", "hatesonar_hate", "hatesonar_offensive", "profanity")


def normalise(text: str) -> str:
    """NFKC (folds full-width and styled letters), lower case, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def char_features(text: str, buckets: int = CHAR_BUCKETS) -> tuple[np.ndarray, np.ndarray]:
    """(bucket indices, values): log-scaled n-gram counts, L2-normalised."""
    plain = f" {normalise(text)} "
    squeezed = "".join(ch for ch in plain if ch.isalnum())
    grams: Counter[int] = Counter()
    for view, orders, tag in ((plain, CHAR_ORDERS, ""), (squeezed, SQUEEZED_ORDERS, "#")):
        for n in orders:
            for i in range(len(view) - n + 1):
                grams[zlib.crc32((tag + view[i:i + n]).encode("utf-8", "surrogatepass")) % buckets] += 1
    if not grams:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    index = np.fromiter(grams.keys(), np.int64, len(grams))
    value = np.log1p(np.fromiter(grams.values(), np.float32, len(grams)))
    return index, (value / np.linalg.norm(value)).astype(np.float32)


@dataclass
class CharModel:
    """logit = sum(weight[bucket] * value) + bias over the hashed n-grams."""

    weights: np.ndarray  # (buckets,)
    bias: float

    @classmethod
    def load(cls, path: Path) -> CharModel:
        with np.load(path, allow_pickle=False) as data:
            model = cls(weights=data["weights"].astype(np.float32), bias=float(data["bias"]))
        if model.weights.shape != (CHAR_BUCKETS,) or not np.isfinite(model.weights).all():
            raise ValueError(f"{path}: expected {CHAR_BUCKETS} finite weights, got {model.weights.shape}")
        return model

    def save(self, path: Path) -> None:
        with path.open("wb") as fh:
            np.savez_compressed(fh, weights=self.weights.astype(np.float16), bias=np.float32(self.bias))

    def logits(self, texts: list[str]) -> np.ndarray:
        out = np.empty(len(texts), np.float32)
        for row, text in enumerate(texts):
            index, value = char_features(text)
            out[row] = float(self.weights[index] @ value) + self.bias
        return out


def logit(p: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """log(p / (1 - p)), clipped so a pretrained model's 0 or 1 stays finite."""
    q = np.clip(np.asarray(p, np.float64), eps, 1.0 - eps)
    return np.log(q / (1.0 - q))


def stack_matrix(parts: dict[str, np.ndarray]) -> np.ndarray:
    """Columns in STACK_FEATURES order: the two learned logits as they are, probabilities as logits."""
    return np.stack([parts["minilm"], parts["char"], logit(parts["hatesonar_hate"]),
                     logit(parts["hatesonar_offensive"]), logit(parts["profanity"])], axis=1).astype(np.float64)


@dataclass
class HateStacker:
    """P(hateful) = sigmoid(features · weights + bias); weights are raw (standardisation folded in)."""

    weights: np.ndarray
    bias: float
    features: tuple[str, ...] = STACK_FEATURES
    threshold: float = 0.5

    @classmethod
    def load(cls, path: Path) -> HateStacker:
        raw = json.loads(path.read_text())
        stacker = cls(weights=np.array(raw["weights"], np.float64), bias=float(raw["bias"]),
                      features=tuple(raw["features"]), threshold=float(raw.get("threshold", 0.5)))
        if stacker.features != STACK_FEATURES or stacker.weights.shape != (len(STACK_FEATURES),):
            raise ValueError(f"{path}: stacker features {stacker.features} do not match {STACK_FEATURES}")
        return stacker

    def to_json(self) -> dict[str, Any]:
        return {"features": list(self.features), "weights": [float(w) for w in self.weights],
                "bias": float(self.bias), "threshold": float(self.threshold)}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    def predict(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        z = stack_matrix(parts) @ self.weights + self.bias
        return np.exp(-np.logaddexp(0.0, -z))


@dataclass
class HateHead:
    """The char model and the stacker together: MiniLM logit + texts + pretrained scores → P(hateful)."""

    char: CharModel
    stacker: HateStacker

    @classmethod
    def load(cls, char_path: Path, stacker_path: Path) -> HateHead:
        return cls(CharModel.load(char_path), HateStacker.load(stacker_path))

    def predict(self, texts: list[str], minilm_logits: np.ndarray, sonar: np.ndarray,
                profane: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(P(hateful) per text, the stacker's inputs) for aligned inputs; ``sonar`` is (N, 3)."""
        parts = {"minilm": np.asarray(minilm_logits, np.float64), "char": self.char.logits(texts),
                 "hatesonar_hate": sonar[:, 0], "hatesonar_offensive": sonar[:, 1], "profanity": profane}
        return self.stacker.predict(parts), parts
