"""Which class a model's score is for, and running a model over a data set in batches.

The positive class comes from the model's thresholds, never from the order of its labels: meme's
labels are ``[hateful, not_hateful, no_text]`` and its threshold is ``{"hateful": 0.5}``, so its
positive class is ``hateful`` (taking "the second label" named ``not_hateful``, the old bug).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ml.build.evaluation.datasets import Dataset, decode_sample
from ml.manifest import Manifest
from ml.types import MediaError, MediaItem, Outcome

TEXT_BATCH, MEDIA_BATCH = 64, 8


@dataclass
class Target:
    """What is measured: ``score`` (or ``scores[score_key]``) as P(``positive``), cut at ``threshold``."""

    positive: str
    threshold: float
    score_key: str | None
    threshold_source: str  # how the threshold was chosen, in words
    notes: list[str] = field(default_factory=list)

    @property
    def score_name(self) -> str:
        return f"outcome.scores[{self.score_key!r}]" if self.score_key else "outcome.score"


def resolve_target(manifest: Manifest, score_key: str | None = None, threshold: float | None = None) -> Target:
    """The positive class and threshold for a model version (and ``--score-key`` / ``--threshold``).

    - with a score key, the positive class is that key and its threshold is the manifest's for it;
    - else a model with one threshold (``{"fake": t}``, ``{"hateful": t}``) is positive for that class;
    - with several (text/1: hate, offensive, profane) the one named like the task, else the first.
    ``threshold`` overrides the manifest's value; without either, a ValueError says what to pass.
    """
    thresholds = manifest.thresholds
    notes: list[str] = []
    if score_key:
        positive = score_key
    elif len(thresholds) == 1:
        positive = next(iter(thresholds))
    elif thresholds:
        positive = manifest.task if manifest.task in thresholds else next(iter(thresholds))
        notes.append(f"{manifest.name} has thresholds for {', '.join(thresholds)}: the positive class is "
                     f"{positive!r}, scored by outcome.score; pass --score-key to read one class's score")
    else:
        raise ValueError(f"{manifest.name}/{manifest.version} names no threshold: pass --score-key and --threshold")
    if threshold is not None:
        return Target(positive, float(threshold), score_key, "--threshold", notes)
    if positive not in thresholds:
        raise ValueError(f"{manifest.name}/{manifest.version} has no threshold for {positive!r} "
                         f"(it has {', '.join(thresholds) or 'none'}): pass --threshold")
    return Target(positive, float(thresholds[positive]), score_key, f"manifest thresholds[{positive!r}]", notes)


def reads_text_only(pipeline: Any) -> bool:
    """Text models (text/1, text/2) are scored through ``predict_texts``: no media to decode."""
    media = set(pipeline.manifest.media)
    return hasattr(pipeline, "predict_texts") and not media & {"image", "video"}


@dataclass
class Scored:
    """Per-item rows (``score`` None when declined or undecodable) and how long the model took."""

    rows: list[dict[str, Any]]
    declined: Counter[str]
    undecodable: Counter[str]
    seconds: float


def _score_of(outcome: Outcome, target: Target, ref: str) -> float | None:
    if outcome.score is None:
        return None
    if not target.score_key:
        return float(outcome.score)
    if target.score_key not in outcome.scores:
        raise ValueError(f"{ref}: the outcome has no scores[{target.score_key!r}] "
                         f"(it has {', '.join(outcome.scores) or 'none'})")
    return float(outcome.scores[target.score_key])


def _batches(order: list[int], size: int) -> Iterator[list[int]]:
    for offset in range(0, len(order), max(1, size)):
        yield order[offset:offset + size]


def score_dataset(pipeline: Any, dataset: Dataset, target: Target, batch_size: int | None = None,
                  max_frames: int = 16, progress: Any = None) -> Scored:
    """Run the model over every item, one ``predict`` / ``predict_texts`` call per batch.

    Text models read the ``text`` of text rows or meme captions; media models decode each file as a
    worker would. Items the model declines (score None: ``no_face``, ``no_text``, ``empty``) and files
    that cannot be decoded are counted by their label / error code and kept out of the figures.
    ``progress`` (optional) is called with the number of items done after each batch.
    """
    text_only = reads_text_only(pipeline)
    if text_only and dataset.layout == "folders":
        raise ValueError(f"{pipeline.manifest.name} reads text; {dataset.path} is a folder of media")
    if not text_only and dataset.layout == "texts":
        raise ValueError(f"{pipeline.manifest.name} reads {'/'.join(pipeline.manifest.media)}; "
                         f"{dataset.path} holds texts only")
    size = batch_size or (TEXT_BATCH if text_only else MEDIA_BATCH)
    samples = dataset.samples
    order = list(range(len(samples)))
    if text_only:  # texts of similar length share a batch: the embedder pads to the longest (3x faster here)
        order.sort(key=lambda i: len(samples[i].text or ""))
    rows: list[dict[str, Any]] = [{} for _ in samples]
    declined: Counter[str] = Counter()
    undecodable: Counter[str] = Counter()
    start = time.perf_counter()
    for batch in _batches(order, size):
        kept: list[int] = []
        items: list[MediaItem] = []
        for index in batch:
            sample = samples[index]
            if text_only:
                kept.append(index)
                continue
            try:
                items.append(decode_sample(sample, max_frames=max_frames))
                kept.append(index)
            except MediaError as exc:
                undecodable[exc.code] += 1
                rows[index] = {"ref": sample.ref, "label": sample.label, "score": None, "undecodable": exc.code,
                               "fields": sample.fields}
        if kept:
            outcomes = (pipeline.predict_texts([samples[i].text or "" for i in kept]) if text_only
                        else pipeline.predict(items))
            for index, outcome in zip(kept, outcomes, strict=True):
                sample = samples[index]
                score = _score_of(outcome, target, sample.ref)
                row = {"ref": sample.ref, "label": sample.label, "outcome": outcome.label, "score": score,
                       "fields": sample.fields}
                if score is None:
                    declined[outcome.label] += 1
                    row["declined"] = outcome.label
                rows[index] = row
        if progress is not None:
            progress(len(batch))
    return Scored(rows, declined, undecodable, time.perf_counter() - start)
