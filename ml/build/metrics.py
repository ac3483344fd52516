"""The one set of ranking metrics every trainer, builder and evaluator uses."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

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


def roc_curve(labels: Sequence[int] | np.ndarray,
              scores: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


# ---- figures at an operating point --------------------------------------------------------------

def confusion(labels: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray) -> dict[str, int]:
    """Counts of true/false negatives/positives (1 = the positive class)."""
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(predicted, dtype=bool)
    return {"tn": int((~y & ~p).sum()), "fp": int((~y & p).sum()),
            "fn": int((y & ~p).sum()), "tp": int((y & p).sum())}


def threshold_rates(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
                    threshold: float) -> dict[str, float | None]:
    """Accuracy, precision, recall and false-positive rate when ``score >= threshold`` is positive.

    A rate whose denominator is empty (no predicted positives, no negatives …) is None, not 0.
    """
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(scores, dtype=np.float64) >= threshold
    tp, fp = float((y & p).sum()), float((~y & p).sum())
    fn, tn = float((y & ~p).sum()), float((~y & ~p).sum())

    def ratio(num: float, den: float) -> float | None:
        return num / den if den else None

    return {"accuracy": ratio(tp + tn, len(y)), "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn), "fpr": ratio(fp, fp + tn)}


def accuracy(labels: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray) -> float | None:
    y, p = np.asarray(labels, dtype=bool), np.asarray(predicted, dtype=bool)
    return float((y == p).mean()) if len(y) else None


# ---- ranking beyond AUROC -----------------------------------------------------------------------

def average_precision(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float | None:
    """Area under the precision-recall curve as the step sum ``sum (R_k - R_{k-1}) P_k`` over distinct
    thresholds (scikit-learn's definition; no interpolation). None without positives."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    positives = int(y.sum())
    if positives == 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[distinct]
    precision = tps / (distinct + 1)
    recall = tps / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


# ---- calibration --------------------------------------------------------------------------------

def _bin_sums(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
              bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin on [0, 1] (the last one closed): item count, score sum, positive count."""
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if len(s) and not (np.all(s >= 0.0) and np.all(s <= 1.0)):
        raise ValueError("calibration needs scores in [0, 1]")
    index = np.minimum((s * bins).astype(np.int64), bins - 1)
    return (np.bincount(index, minlength=bins).astype(np.float64), np.bincount(index, weights=s, minlength=bins),
            np.bincount(index, weights=y, minlength=bins))


def calibration_bins(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
                     bins: int = 10) -> list[dict[str, float | int | None]]:
    """The reliability table: per equal-width bin its range, item count, mean score and observed share
    of positives. Scores must be probabilities; anything outside [0, 1] is refused (ValueError)."""
    counts, score_sums, positive_sums = _bin_sums(labels, scores, bins)
    return [{"low": b / bins, "high": (b + 1) / bins, "n": int(counts[b]),
             "mean_score": float(score_sums[b] / counts[b]) if counts[b] else None,
             "positive_rate": float(positive_sums[b] / counts[b]) if counts[b] else None}
            for b in range(bins)]


def expected_calibration_error(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
                               bins: int = 10) -> float | None:
    """ECE over equal-width bins: ``sum_b (n_b / n) |positive rate_b - mean score_b|``; None when empty.

    Why equal width (not equal mass): the bins then mean the same on every data set and model, so two
    ECEs can be compared; sparse bins weigh little because each bin is weighted by its count.
    """
    counts, score_sums, positive_sums = _bin_sums(labels, scores, bins)
    total = counts.sum()
    if not total:
        return None
    return float(np.abs(positive_sums - score_sums).sum() / total)  # n_b |rate_b - mean_b| = |pos_b - sum_b|


# ---- uncertainty --------------------------------------------------------------------------------

Figures = Callable[[np.ndarray, np.ndarray], Mapping[str, "float | None"]]


def bootstrap_intervals(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
                        figures: Figures, resamples: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict[str, list[float] | None]:
    """Percentile bootstrap intervals for every figure ``figures(labels, scores)`` returns.

    The items are resampled with replacement ``resamples`` times from one seeded generator (so the
    same seed gives the same intervals), all figures are computed on the same resamples, and the
    (1-level)/2 and (1+level)/2 quantiles are taken. A resample where a figure is undefined (None: one
    class only, no predicted positives) is left out for that figure; None when none is left.
    """
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    names = list(figures(y, s)) if len(y) else []
    values: dict[str, list[float]] = {name: [] for name in names}
    rng = np.random.default_rng(seed)
    for _ in range(resamples if len(y) else 0):
        pick = rng.integers(0, len(y), len(y))
        for name, value in figures(y[pick], s[pick]).items():
            if value is not None:
                values[name].append(value)
    tail = (1.0 - level) / 2.0
    return {name: ([float(np.quantile(v, tail)), float(np.quantile(v, 1.0 - tail))] if v else None)
            for name, v in values.items()}
