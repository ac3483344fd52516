"""Figures for text/2: per-source AUROC / AP with bootstrap 95 % intervals, threshold metrics and ECE,
all from the one implementation in ml/build/metrics.py.

The figures land in the training report and, in the shape documented at the top of ml/manifest.py,
in the manifest's ``validation`` block.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ml.build.metrics import auroc, average_precision, bootstrap_intervals, expected_calibration_error, threshold_rates

BOOTSTRAP = 500


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _interval(values: list[float] | None) -> list[float] | None:
    return None if values is None else [round(values[0], 4), round(values[1], 4)]


def figures(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5, seed: int = 0,
            rounds: int = BOOTSTRAP) -> dict[str, Any]:
    """One set of figures in the manifest ``datasets`` shape (without name / description / split)."""
    y = np.asarray(labels).astype(int)
    p = np.asarray(probs, np.float64)
    ranks = bootstrap_intervals(y, p, lambda a, b: {"auroc": auroc(a, b), "ap": average_precision(a, b)},
                                resamples=rounds, seed=seed) if len(y) else {}
    rates = threshold_rates(y, p, threshold)
    return {
        "n": len(y), "positives": int(y.sum()), "threshold": threshold,
        "auroc": _round(auroc(y, p)), "auroc_ci": _interval(ranks.get("auroc")),
        "average_precision": _round(average_precision(y, p)), "average_precision_ci": _interval(ranks.get("ap")),
        **{name: _round(value) for name, value in rates.items()},
        "ece": _round(expected_calibration_error(y, p)),
    }


def by_source(labels: np.ndarray, probs: np.ndarray, sources: list[str], threshold: float = 0.5,
              rounds: int = BOOTSTRAP) -> dict[str, dict[str, Any]]:
    names = sorted(set(sources))
    src = np.array(sources)
    return {name: figures(labels[src == name], probs[src == name], threshold, rounds=rounds) for name in names}


def auroc_only(labels: np.ndarray, scores: np.ndarray, rounds: int = BOOTSTRAP) -> dict[str, Any]:
    """AUROC with its interval: what the leave-one-source-out table and the component table show."""
    y = np.asarray(labels).astype(int)
    ranks = bootstrap_intervals(y, np.asarray(scores, np.float64), lambda a, b: {"auroc": auroc(a, b)},
                                resamples=rounds) if len(y) else {}
    return {"n": len(y), "positives": int(y.sum()), "auroc": _round(auroc(y, scores)),
            "auroc_ci": _interval(ranks.get("auroc"))}
