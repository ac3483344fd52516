"""Evaluate a model version on a labelled set: the entry point of ``deepscreen eval``.

The parts live in ml.build.evaluation: ``datasets`` (layouts: media folders, Hateful-Memes jsonl,
text csv / jsonl), ``scoring`` (the positive class from the model's thresholds, batched
``predict`` / ``predict_texts``), ``report`` (figures from ml.build.metrics, per group, the table),
``plots`` (ROC and reliability PNGs) and ``record`` (manifest validation block and model card).
"""

from __future__ import annotations

from typing import Any

from ml.build.evaluation.datasets import NO_GROUP, Dataset, DatasetError, Sample, column_value, load_dataset
from ml.build.evaluation.report import build_report, format_table
from ml.build.evaluation.scoring import Target, resolve_target, score_dataset

__all__ = ["Dataset", "DatasetError", "Sample", "Target", "evaluate", "format_table", "load_dataset",
           "resolve_target"]


def check_group_column(dataset: Dataset, column: str) -> None:
    """Refuse a ``--group-by`` column no item has, naming the columns there are (before any model runs)."""
    if not any(column_value(s.fields, column) != NO_GROUP for s in dataset.samples):
        raise DatasetError(f"no item of {dataset.path} has the column {column!r}; "
                           f"columns: {', '.join(dataset.columns()) or 'none'}")


def evaluate(pipeline: Any, dataset: Dataset, score_key: str | None = None, threshold: float | None = None,
             group_by: str | None = None, batch_size: int | None = None, max_frames: int = 16, bins: int = 10,
             resamples: int = 1000, seed: int = 0, progress: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score every item of ``dataset`` with ``pipeline`` and compute the report; returns (report, per-item rows)."""
    target = resolve_target(pipeline.manifest, score_key, threshold)
    if group_by:
        check_group_column(dataset, group_by)
    scored = score_dataset(pipeline, dataset, target, batch_size, max_frames, progress)
    report = build_report(pipeline, dataset, scored, target, group_by, bins, resamples, seed)
    return report, scored.rows
