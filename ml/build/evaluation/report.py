"""The figures of an evaluation (overall and per group), its JSON document and its printed table.

Every figure comes from ml.build.metrics (the one AUROC, AP, ECE, bootstrap); this module only
chooses which to compute and lays them out.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from ml.build.evaluation.datasets import Dataset, column_value
from ml.build.evaluation.scoring import Scored, Target
from ml.build.metrics import (
    auroc,
    average_precision,
    bootstrap_intervals,
    calibration_bins,
    confusion,
    expected_calibration_error,
    roc_curve,
    threshold_rates,
)

RATES = ("accuracy", "precision", "recall", "fpr")
WITH_INTERVALS = ("auroc", "average_precision", *RATES)


def summarize(labels: np.ndarray, scores: np.ndarray, threshold: float, bins: int = 10,
              resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """AUROC, AP, the rates at ``threshold``, confusion, ECE and reliability table, and percentile
    bootstrap 95 % intervals (``<figure>_ci``) for AUROC, AP and the rates."""

    def figures(y: np.ndarray, s: np.ndarray) -> dict[str, float | None]:
        return {"auroc": auroc(y, s), "average_precision": average_precision(y, s), **threshold_rates(y, s, threshold)}

    point = figures(labels, scores) if len(labels) else dict.fromkeys(WITH_INTERVALS)
    intervals = bootstrap_intervals(labels, scores, figures, resamples, seed) if len(labels) else {}
    out: dict[str, Any] = {"n": len(labels), "positives": int(np.sum(labels)),
                           "negatives": int(len(labels) - np.sum(labels))}
    for name in WITH_INTERVALS:
        out[name] = point[name]
        out[f"{name}_ci"] = intervals.get(name)
    out["threshold"] = threshold
    out["confusion"] = confusion(labels, scores >= threshold)
    try:
        out["ece"] = expected_calibration_error(labels, scores, bins)
        out["reliability"] = calibration_bins(labels, scores, bins)
    except ValueError:  # scores that are not probabilities have no calibration
        out["ece"], out["reliability"] = None, []
    return out


def _arrays(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    scored = [r for r in rows if r["score"] is not None]
    return (np.array([r["label"] for r in scored], dtype=np.int64),
            np.array([r["score"] for r in scored], dtype=np.float64))


def build_report(pipeline: Any, dataset: Dataset, scored: Scored, target: Target, group_by: str | None = None,
                 bins: int = 10, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The whole evaluation as one JSON-ready dict (top-level ``auroc`` and its interval, the rates,
    calibration, counts of declined / undecodable items, ROC points and the per-group breakdown)."""
    manifest = pipeline.manifest
    labels, scores = _arrays(scored.rows)
    report: dict[str, Any] = {
        "model": manifest.name, "version": manifest.version,
        "data": {"path": str(dataset.path), "name": dataset.name, "layout": dataset.layout,
                 "items": len(dataset.samples), "positives": dataset.positives,
                 "negatives": len(dataset.samples) - dataset.positives, "description": dataset.describe()},
        "positive_label": target.positive, "score": target.score_name, "threshold_source": target.threshold_source,
        **summarize(labels, scores, target.threshold, bins, resamples, seed),
        "declined": dict(scored.declined), "undecodable": dict(scored.undecodable),
        "calibration": {"bins": bins, "binning": "equal-width on [0, 1]",
                        "ece": "sum over bins of n_b/n |positive rate - mean score|"},
        "bootstrap": {"resamples": resamples, "seed": seed, "method": "percentile, items resampled with replacement",
                      "level": 0.95},
        "seconds": round(scored.seconds, 3),
        "items_per_second": round(len(scored.rows) / scored.seconds, 1) if scored.seconds else None,
        "notes": list(target.notes),
    }
    fpr, tpr, thr = roc_curve(labels, scores) if len(labels) else (np.array([]),) * 3
    report["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                     "thresholds": [float(t) if np.isfinite(t) else None for t in thr]}  # [0] is +inf
    if report["ece"] is None and len(labels):
        report["notes"].append("scores are not all in [0, 1]: no calibration figures")
    if group_by:
        report["group_by"] = group_by
        report["by_group"] = by_group(scored, group_by, target.threshold, bins, resamples, seed)
    return report


def by_group(scored: Scored, column: str, threshold: float, bins: int, resamples: int, seed: int) -> dict[str, Any]:
    """The same figures for every value of ``column`` (declined / undecodable items counted per group)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in scored.rows:
        groups.setdefault(column_value(row["fields"], column), []).append(row)
    out: dict[str, Any] = {}
    for name in sorted(groups):
        rows = groups[name]
        labels, scores = _arrays(rows)
        figures = summarize(labels, scores, threshold, bins, resamples, seed)
        figures.pop("reliability")
        figures["declined"] = dict(Counter(r["declined"] for r in rows if "declined" in r))
        figures["undecodable"] = dict(Counter(r["undecodable"] for r in rows if "undecodable" in r))
        out[name] = figures
    return out


# ---- printing ----------------------------------------------------------------------------------

def _fig(value: float | None, ci: list[float] | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"


def format_table(report: dict[str, Any]) -> str:
    """A readable summary: the figures with their 95 % intervals, the confusion and the groups."""
    cm = report["confusion"]
    data = report["data"]
    lines = [
        f"model              {report['model']} v{report['version']}",
        f"data               {data['description']}",
        f"scored             {report['n']} ({report['positives']} positive, {report['negatives']} negative)",
        f"declined           {_counts(report['declined'])}",
        f"undecodable        {_counts(report['undecodable'])}",
        f"positive class     {report['positive_label']} = {report['score']} >= {report['threshold']:g} "
        f"({report['threshold_source']})",
        f"AUROC              {_fig(report['auroc'], report['auroc_ci'])}",
        f"average precision  {_fig(report['average_precision'], report['average_precision_ci'])}",
    ]
    lines += [f"{name:<19}{_fig(report[name], report[f'{name}_ci'])}" for name in RATES]
    lines += [
        f"{'ECE (' + str(report['calibration']['bins']) + ' bins)':<19}{_fig(report['ece'])}  "
        f"(equal-width; reliability plot)",
        f"confusion          tn={cm['tn']} fp={cm['fp']} fn={cm['fn']} tp={cm['tp']}",
        f"intervals          95 % percentile bootstrap, {report['bootstrap']['resamples']} resamples, "
        f"seed {report['bootstrap']['seed']}",
        f"time               {report['seconds']:.1f} s ({report['items_per_second'] or 0:g} items/s)",
    ]
    lines += [f"note               {note}" for note in report["notes"]]
    if report.get("by_group"):
        lines.append(f"by {report['group_by']}:")
        width = max(len(name) for name in report["by_group"])
        lines.append(f"  {'group':<{width}}  {'n':>6} {'pos':>6}  {'AUROC [95 % CI]':<24} {'AP':>6} "
                     f"{'recall':>7} {'FPR':>6} {'ECE':>6}  declined")
        for name, g in report["by_group"].items():
            lines.append(f"  {name:<{width}}  {g['n']:>6} {g['positives']:>6}  {_fig(g['auroc'], g['auroc_ci']):<24} "
                         f"{_fig(g['average_precision']):>6} {_fig(g['recall']):>7} {_fig(g['fpr']):>6} "
                         f"{_fig(g['ece']):>6}  {sum(g['declined'].values()) + sum(g['undecodable'].values())}")
    return "\n".join(lines)
