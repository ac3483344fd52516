"""The one logistic-regression trainer: standardised features, Adam, L2, numpy only.

Used for every trained head (the deepfake SBI head, the meme fusion head, the text hate head), so
they share one tested optimiser and one way to fold the standardisation into raw weights.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


class LogisticRegression:
    """p = sigmoid(((x - mean) / scale) · w + b), fitted with Adam on mean log-loss + l2/2 |w|².

    ``scale_floor``: the scale of each feature is at least this fraction of the largest one, so
    near-constant features cannot get huge raw weights once folded (which wrecks INT8 and amplifies
    noise). The standardisation is fixed by the first batch it sees (``standardise``).
    """

    def __init__(self, dim: int, l2: float = 1e-2, lr: float = 1e-2, scale_floor: float = 0.0,
                 bias: float = 0.0) -> None:
        self.w, self.b, self.l2, self.lr = np.zeros(dim), float(bias), l2, lr
        self.scale_floor = scale_floor
        self._m, self._v, self._t = np.zeros(dim + 1), np.zeros(dim + 1), 0
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    def standardise(self, x: np.ndarray) -> np.ndarray:
        if self.mean is None:
            std = x.std(axis=0)
            if self.scale_floor > 0:
                scale = np.maximum(std, self.scale_floor * std.max() + 1e-6)
            else:
                scale = np.where(std > 1e-6, std, 1.0)
            self.mean, self.scale = x.mean(axis=0), scale
        assert self.scale is not None
        return (x - self.mean) / self.scale

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.standardise(x) @ self.w + self.b

    def predict(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(self.logits(x))

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        z = self.logits(x)
        return float(np.mean(np.logaddexp(0, z) - y * z))

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One Adam step on (x, y); returns the regularised loss before the step."""
        z = self.logits(x)
        p = sigmoid(z)
        loss = float(np.mean(np.logaddexp(0, z) - y * z) + 0.5 * self.l2 * self.w @ self.w)
        grad = np.append(self.standardise(x).T @ (p - y) / len(y) + self.l2 * self.w, np.mean(p - y))
        self._t += 1
        self._m = 0.9 * self._m + 0.1 * grad
        self._v = 0.999 * self._v + 0.001 * grad**2
        update = self.lr * (self._m / (1 - 0.9**self._t)) / (np.sqrt(self._v / (1 - 0.999**self._t)) + 1e-8)
        self.w -= update[:-1]
        self.b -= update[-1]
        return loss

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int, batch: int = 64, seed: int = 0) -> float:
        """Mini-batch epochs in a seeded order; returns the final (unregularised) training log-loss."""
        rng = np.random.default_rng(seed)
        self.standardise(x)
        for _ in range(max(1, epochs)):
            order = rng.permutation(len(y))
            for start in range(0, len(y), batch):
                idx = order[start:start + batch]
                self.step(x[idx], y[idx])
        return self.loss(x, y)

    def folded(self) -> tuple[np.ndarray, float]:
        """(weight, bias) such that logit = x @ weight + bias, without the standardisation."""
        assert self.mean is not None and self.scale is not None
        weight = self.w / self.scale
        return weight.astype(np.float32), float(self.b - self.mean @ weight)


def base_rate_logit(y: np.ndarray) -> float:
    """Start the bias at the training set's base rate, so early steps move weights, not the intercept."""
    rate = float(np.mean(y))
    return float(np.log((rate + 1e-3) / (1 - rate + 1e-3)))
