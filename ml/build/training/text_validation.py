"""Figures for text/2: per-source AUROC / AP with bootstrap 95 % intervals, threshold metrics and ECE.

The figures land in the training report and, in the shape documented at the top of ml/manifest.py,
in the manifest's ``validation`` block.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ml.build.metrics import auroc

BOOTSTRAP = 500


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the precision-recall curve, step-wise (as scikit-learn's average_precision_score)."""
    y = np.asarray(labels).astype(bool)
    if not y.any():
        return None
    order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
    y, s = y[order], np.asarray(scores, np.float64)[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each tie group
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean probability| over equal-width bins, weighted by bin size."""
    y = np.asarray(labels, np.float64)
    p = np.clip(np.asarray(probs, np.float64), 0.0, 1.0)
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / max(len(y), 1))


def bootstrap_ci(labels: np.ndarray, scores: np.ndarray, metric: Any, rounds: int = BOOTSTRAP,
                 seed: int = 0) -> list[float] | None:
    """Percentile 95 % interval of ``metric`` over resamples of the rows (stratified by label, so every
    resample has both classes)."""
    y = np.asarray(labels).astype(int)
    pos, neg = np.nonzero(y == 1)[0], np.nonzero(y == 0)[0]
    if not len(pos) or not len(neg):
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        idx = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        value = metric(y[idx], scores[idx])
        if value is not None:
            values.append(value)
    return [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)]


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def figures(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5, seed: int = 0,
            rounds: int = BOOTSTRAP) -> dict[str, Any]:
    """One set of figures in the manifest ``datasets`` shape (without name / description / split)."""
    y = np.asarray(labels).astype(int)
    p = np.asarray(probs, np.float64)
    flagged = p >= threshold
    tp = int(np.sum(flagged & (y == 1)))
    fp = int(np.sum(flagged & (y == 0)))
    out: dict[str, Any] = {
        "n": len(y), "positives": int(y.sum()), "threshold": threshold,
        "auroc": _round(auroc(y, p)), "auroc_ci": bootstrap_ci(y, p, auroc, rounds, seed),
        "average_precision": _round(average_precision(y, p)),
        "average_precision_ci": bootstrap_ci(y, p, average_precision, rounds, seed),
        "accuracy": _round(float(np.mean(flagged == (y == 1)))) if len(y) else None,
        "precision": _round(tp / (tp + fp)) if tp + fp else None,
        "recall": _round(tp / y.sum()) if y.sum() else None,
        "fpr": _round(fp / (len(y) - y.sum())) if len(y) - y.sum() else None,
        "ece": _round(expected_calibration_error(y, p)) if len(y) else None,
    }
    return out


def by_source(labels: np.ndarray, probs: np.ndarray, sources: list[str], threshold: float = 0.5,
              rounds: int = BOOTSTRAP) -> dict[str, dict[str, Any]]:
    names = sorted(set(sources))
    src = np.array(sources)
    return {name: figures(labels[src == name], probs[src == name], threshold, rounds=rounds) for name in names}


def auroc_only(labels: np.ndarray, scores: np.ndarray, rounds: int = BOOTSTRAP) -> dict[str, Any]:
    """AUROC with its interval: what the leave-one-source-out table and the component table show."""
    return {"n": len(labels), "positives": int(np.sum(labels)), "auroc": _round(auroc(labels, scores)),
            "auroc_ci": bootstrap_ci(labels, scores, auroc, rounds)}
