"""The one set of ranking metrics every trainer, builder and evaluator uses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float | None:
    """Area under the ROC curve by the rank statistic (ties averaged); None when one class is absent.

    O(n log n), so it serves a 100k-row text evaluation as well as a 30-crop parity check.
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    ranks = (upper - (counts - 1) / 2.0)[inverse]
    return float((ranks[y].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def roc_curve(labels: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds descending, starting at (0, 0)."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1] if len(s) else np.array([], dtype=np.int64)
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    positives, negatives = max(int(y.sum()), 1), max(int(len(y) - y.sum()), 1)
    fpr = np.r_[0.0, fps / negatives]
    tpr = np.r_[0.0, tps / positives]
    thresholds = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thresholds


def eer_threshold(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """The score where the false-positive rate on negatives meets the miss rate on positives."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    best, threshold = 2.0, 0.5
    for t in np.unique(s):
        fpr = float(np.mean(s[~y] >= t))
        fnr = float(np.mean(s[y] < t))
        if abs(fpr - fnr) < best:
            best, threshold = abs(fpr - fnr), float(t)
    return threshold


def threshold_at_fpr(negative_scores: Sequence[float] | np.ndarray, max_fpr: float) -> float:
    """The lowest threshold (``score >= t`` is positive) that flags at most ``max_fpr`` of the negatives."""
    s = np.sort(np.asarray(negative_scores, dtype=np.float64))
    if not len(s):
        raise ValueError("no negative scores")
    allowed = int(np.floor(max_fpr * len(s)))  # negatives that may sit at or above the threshold
    if allowed <= 0:
        return float(np.nextafter(s[-1], np.inf))
    return float(np.nextafter(s[-allowed - 1], np.inf))
