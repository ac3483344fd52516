"""The one set of metrics (ml.build.metrics): hand-computed values, edge cases, and properties."""

from __future__ import annotations

import numpy as np
import pytest

from ml.build.metrics import (
    accuracy,
    auroc,
    average_precision,
    bootstrap_intervals,
    calibration_bins,
    confusion,
    expected_calibration_error,
    roc_curve,
    threshold_rates,
)


def test_auroc_matches_hand_computed_values() -> None:
    # Pairs (pos, neg): (0.35, 0.1) ok, (0.35, 0.4) wrong, (0.8, *) ok twice -> 3 of 4.
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    assert auroc([1, 1, 0], [0.9, 0.8, 0.1]) == pytest.approx(1.0)
    assert auroc([1, 0], [0.1, 0.9]) == pytest.approx(0.0)
    # (0.6 vs 0.6) tie = 0.5, (0.6 vs 0.2) = 1, (0.9 vs both) = 2 -> 3.5 / 4
    assert auroc([0, 0, 1, 1], [0.6, 0.2, 0.6, 0.9]) == pytest.approx(0.875)
    assert auroc([1, 1], [0.3, 0.4]) is None  # undefined with one class


def test_auroc_agrees_with_the_area_under_its_own_curve() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200) + labels * 0.3, 2)  # rounding makes ties
    fpr, tpr, _ = roc_curve(labels, scores)
    assert auroc(labels, scores) == pytest.approx(float(np.trapezoid(tpr, fpr)))


def test_roc_curve_points() -> None:
    fpr, tpr, thresholds = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert thresholds[0] == np.inf
    assert thresholds[1:].tolist() == [0.8, 0.4, 0.35, 0.1]


def test_confusion_accuracy_and_rates_at_a_threshold() -> None:
    labels, predicted = [0, 0, 1, 1, 1], [0, 1, 1, 0, 1]
    assert confusion(labels, predicted) == {"tn": 1, "fp": 1, "fn": 1, "tp": 2}
    assert accuracy(labels, predicted) == pytest.approx(3 / 5)
    assert accuracy([], []) is None
    # score >= 0.5 is positive: 0.5 itself counts (the workers' rule), 0.49 does not.
    rates = threshold_rates([0, 0, 1, 1, 1], [0.1, 0.5, 0.9, 0.49, 0.7], 0.5)
    assert rates == pytest.approx({"accuracy": 3 / 5, "precision": 2 / 3, "recall": 2 / 3, "fpr": 1 / 2})
    none_flagged = threshold_rates([0, 1], [0.1, 0.2], 0.5)
    assert none_flagged["precision"] is None and none_flagged["recall"] == 0.0  # undefined, not 0
    assert threshold_rates([1, 1], [0.9, 0.1], 0.5)["fpr"] is None


def test_average_precision_hand_computed_and_against_scikit_learn() -> None:
    # Descending: 0.8 (pos) P=1 R=.5; 0.4 (neg); 0.35 (pos) P=2/3 R=1 -> AP = .5*1 + .5*2/3.
    assert average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.5 + 1 / 3)
    assert average_precision([1, 0, 1], [0.9, 0.1, 0.8]) == pytest.approx(1.0)
    assert average_precision([0, 0], [0.2, 0.3]) is None
    assert average_precision([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie is one threshold
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500) * 0.7 + labels * 0.3, 2)
    assert average_precision(labels, scores) == pytest.approx(sklearn_metrics.average_precision_score(labels, scores))


def test_ece_is_near_zero_when_calibrated_and_large_when_not() -> None:
    rng = np.random.default_rng(7)
    scores = rng.random(50_000)
    calibrated = (rng.random(50_000) < scores).astype(int)  # P(positive | score) = score
    assert expected_calibration_error(calibrated, scores) < 0.015
    overconfident = (rng.random(50_000) < 0.5).astype(int)  # outcome a coin whatever the score says
    assert expected_calibration_error(overconfident, scores) > 0.2
    # Scores squashed toward 1: the model says 0.75-1.0 while the truth follows the original score.
    assert expected_calibration_error(calibrated, 0.75 + scores / 4) > 0.2


def test_calibration_bins_hand_computed() -> None:
    labels = [0, 1, 1, 1, 0]
    scores = [0.05, 0.15, 0.95, 1.0, 0.9]  # 1.0 falls in the last (closed) bin
    table = calibration_bins(labels, scores, bins=10)
    assert [b["n"] for b in table] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 3]
    assert table[9]["mean_score"] == pytest.approx((0.95 + 1.0 + 0.9) / 3)
    assert table[9]["positive_rate"] == pytest.approx(2 / 3)
    assert table[2]["mean_score"] is None
    # ECE: bin 0 |0 - .05| * 1/5, bin 1 |1 - .15| * 1/5, bin 9 |2/3 - .95| * 3/5
    expected = 0.05 / 5 + 0.85 / 5 + abs(2 / 3 - 0.95) * 3 / 5
    assert expected_calibration_error(labels, scores, bins=10) == pytest.approx(expected)
    assert expected_calibration_error([], []) is None
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibration_bins([0, 1], [0.5, 1.7])


def _figures(y: np.ndarray, s: np.ndarray) -> dict[str, float | None]:
    return {"auroc": auroc(y, s), "average_precision": average_precision(y, s), **threshold_rates(y, s, 0.5)}


def test_bootstrap_intervals_contain_the_estimate_and_repeat_with_a_seed() -> None:
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 2, 400)
    scores = np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1)
    point = _figures(labels, scores)
    first = bootstrap_intervals(labels, scores, _figures, resamples=300, seed=5)
    again = bootstrap_intervals(labels, scores, _figures, resamples=300, seed=5)
    other = bootstrap_intervals(labels, scores, _figures, resamples=300, seed=6)
    assert first == again
    assert first != other
    assert set(first) == set(point)
    for name, value in point.items():
        lo, hi = first[name]  # type: ignore[misc]
        assert value is not None and lo <= value <= hi, name
        assert hi - lo < 0.25, name  # 400 items: a few points wide, not the whole range
    # More resamples of the same data: the interval of AUROC settles near the normal approximation.
    wide = bootstrap_intervals(labels, scores, _figures, resamples=2000, seed=5)["auroc"]
    assert wide is not None and 0.05 < wide[1] - wide[0] < 0.15


def test_bootstrap_leaves_out_undefined_resamples() -> None:
    # Two positives in 30 items: many resamples have none, where AUROC is undefined and left out.
    labels = np.array([1, 1] + [0] * 28)
    scores = np.linspace(1.0, 0.0, 30)
    intervals = bootstrap_intervals(labels, scores, _figures, resamples=200, seed=0)
    assert intervals["auroc"] == [1.0, 1.0]
    assert bootstrap_intervals([], [], _figures, resamples=10) == {}
