"""Evaluate a model version on a labelled set: AUROC, accuracy at the manifest threshold, confusion matrix.

Two layouts are read: folders ``real/`` + ``fake/`` of images or videos (FaceForensics++ / DFDC style;
``fake`` is the positive class) and a Hateful Memes ``.jsonl`` (``{id, img, label, text}``, ``img``
relative to the file's folder; label 1 is positive). The model's own positive class is the second
manifest label (``fake``, ``hateful``, ``nsfw`` …) and its score is the model's ``Outcome.score``.
Items the model declines (score None, e.g. ``no_face``) or cannot decode are counted, not scored.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml.build.metrics import auroc, roc_curve
from ml.image_decode import decode_image
from ml.types import MediaError, MediaItem

IMAGE_EXT = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".gif": "gif", ".webp": "webp"}
VIDEO_EXT = {".mp4": "mp4", ".mov": "mov", ".avi": "avi", ".webm": "webm"}
NEGATIVE_DIRS, POSITIVE_DIRS = ("real", "original", "0"), ("fake", "manipulated", "1")


@dataclass
class Sample:
    path: Path
    label: int  # 1 = positive (fake / hateful), 0 = negative
    text: str | None = None


@dataclass
class EvalReport:
    model: str
    version: str
    dataset: str
    total: int
    evaluated: int
    skipped: dict[str, int]
    positive_label: str
    threshold: float
    auroc: float | None
    accuracy: float | None
    confusion: dict[str, int]
    precision: float | None
    recall: float | None
    seconds: float
    roc: dict[str, list[float | None]] = field(default_factory=dict)  # thresholds[0] is None (+inf)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ---- metrics (pure functions on arrays) -------------------------------------------------------

def confusion(labels: Sequence[int], predicted: Sequence[int]) -> dict[str, int]:
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(predicted, dtype=bool)
    return {"tn": int((~y & ~p).sum()), "fp": int((~y & p).sum()),
            "fn": int((y & ~p).sum()), "tp": int((y & p).sum())}


def accuracy(labels: Sequence[int], predicted: Sequence[int]) -> float | None:
    y, p = np.asarray(labels, dtype=bool), np.asarray(predicted, dtype=bool)
    return float((y == p).mean()) if len(y) else None


# ---- data sets ---------------------------------------------------------------------------------

def load_samples(path: Path) -> list[Sample]:
    """Read a ``real/`` + ``fake/`` folder tree or a Hateful Memes jsonl."""
    if path.is_file() and path.suffix == ".jsonl":
        samples = []
        for line_no, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            record = json.loads(line)
            if "label" not in record:
                raise ValueError(f"{path}:{line_no} has no label (unlabelled test splits cannot be scored)")
            samples.append(Sample(path.parent / record["img"], int(record["label"]), record.get("text")))
        return samples
    if not path.is_dir():
        raise ValueError(f"{path} is neither a folder with real/ and fake/ nor a .jsonl file")
    samples = []
    for label, names in ((0, NEGATIVE_DIRS), (1, POSITIVE_DIRS)):
        for name in names:
            folder = path / name
            if folder.is_dir():
                samples += [Sample(f, label) for f in sorted(folder.rglob("*"))
                            if f.suffix.lower() in IMAGE_EXT | VIDEO_EXT]
    if not samples:
        raise ValueError(f"{path} holds no images or videos under real/ and fake/")
    return samples


def decode_sample(sample: Sample, max_pixels: int = 40_000_000, max_frames: int = 16,
                  max_seconds: float = 600.0) -> MediaItem:
    suffix = sample.path.suffix.lower()
    try:
        data = sample.path.read_bytes()
    except OSError as exc:
        raise MediaError("unreadable_file", str(exc)) from exc
    if suffix in VIDEO_EXT:
        try:
            from ml.video_decode import decode_video
        except ImportError as exc:
            raise MediaError("video_unsupported", "video decoding is not available here") from exc
        item = decode_video(data, VIDEO_EXT[suffix], max_seconds, max_frames)
    else:
        item = decode_image(data, max_pixels)
    item.text = sample.text
    return item


# ---- the run -----------------------------------------------------------------------------------

def evaluate(pipeline: Any, samples: list[Sample], dataset: str = "", batch_size: int = 8,
             max_frames: int = 16) -> tuple[EvalReport, list[dict[str, Any]]]:
    """Score every sample with ``pipeline.predict`` in batches; return the report and per-item rows."""
    manifest = pipeline.manifest
    positive = manifest.labels[1] if len(manifest.labels) > 1 else "positive"
    threshold = float(manifest.thresholds.get(positive, 0.5))
    skipped: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for offset in range(0, len(samples), max(1, batch_size)):
        batch = samples[offset:offset + batch_size]
        items, kept = [], []
        for sample in batch:
            try:
                items.append(decode_sample(sample, max_frames=max_frames))
                kept.append(sample)
            except MediaError as exc:
                skipped[exc.code] += 1
                rows.append({"path": str(sample.path), "label": sample.label, "skipped": exc.code})
        if not items:
            continue
        for sample, outcome in zip(kept, pipeline.predict(items), strict=True):
            row = {"path": str(sample.path), "label": sample.label, "outcome": outcome.label,
                   "score": outcome.score}
            if outcome.score is None:
                skipped[outcome.label] += 1
                row["skipped"] = outcome.label
            rows.append(row)
    scored = [r for r in rows if "skipped" not in r]
    labels = [r["label"] for r in scored]
    scores = [float(r["score"]) for r in scored]
    predicted = [int(s >= threshold) for s in scores]
    cm = confusion(labels, predicted)
    fpr, tpr, thr = roc_curve(labels, scores) if scored else (np.array([]),) * 3
    report = EvalReport(
        model=manifest.name, version=manifest.version, dataset=dataset, total=len(samples),
        evaluated=len(scored), skipped=dict(skipped), positive_label=positive, threshold=threshold,
        auroc=auroc(labels, scores), accuracy=accuracy(labels, predicted), confusion=cm,
        precision=cm["tp"] / (cm["tp"] + cm["fp"]) if cm["tp"] + cm["fp"] else None,
        recall=cm["tp"] / (cm["tp"] + cm["fn"]) if cm["tp"] + cm["fn"] else None,
        seconds=round(time.perf_counter() - start, 3),
        roc={"fpr": fpr.tolist(), "tpr": tpr.tolist(),
             "thresholds": [float(t) if np.isfinite(t) else None for t in thr]},
    )
    return report, rows


def draw_roc(report: EvalReport, path: Path, size: int = 480) -> Path:
    """A plain ROC plot (Pillow only): diagonal for chance, the curve, AUROC in the corner."""
    from PIL import Image, ImageDraw

    margin = 48
    side = size - 2 * margin
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)

    def xy(fx: float, ty: float) -> tuple[float, float]:
        return margin + fx * side, size - margin - ty * side

    draw.rectangle([xy(0, 1), xy(1, 0)], outline="black")
    for tick in (0.25, 0.5, 0.75):
        draw.line([xy(tick, 0), xy(tick, 1)], fill=(225, 225, 225))
        draw.line([xy(0, tick), xy(1, tick)], fill=(225, 225, 225))
        draw.text((xy(tick, 0)[0] - 8, size - margin + 6), f"{tick:.2f}", fill="black")
        draw.text((8, xy(0, tick)[1] - 6), f"{tick:.2f}", fill="black")
    draw.line([xy(0, 0), xy(1, 1)], fill=(160, 160, 160), width=1)
    points = [xy(f or 0.0, t or 0.0) for f, t in zip(report.roc.get("fpr", []), report.roc.get("tpr", []),
                                                     strict=True)]
    if len(points) > 1:
        draw.line(points, fill=(200, 30, 30), width=3)
    auc = "n/a" if report.auroc is None else f"{report.auroc:.3f}"
    draw.text((margin, 12), f"{report.model} v{report.version}  AUROC {auc}  n={report.evaluated}", fill="black")
    draw.text((size // 2 - 60, size - 20), "false positive rate", fill="black")
    draw.text((4, margin - 20), "true positive rate", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def format_table(report: EvalReport) -> str:
    cm = report.confusion

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = [
        f"model            {report.model} v{report.version}",
        f"data             {report.dataset} ({report.total} items, {report.evaluated} scored)",
        f"skipped          {', '.join(f'{k}={v}' for k, v in sorted(report.skipped.items())) or 'none'}",
        f"AUROC            {pct(report.auroc)}",
        f"accuracy @ {report.threshold:<5g} {pct(report.accuracy)}  "
        f"(positive = {report.positive_label} when score >= threshold)",
        f"precision/recall {pct(report.precision)} / {pct(report.recall)}",
        "confusion         predicted neg   predicted pos",
        f"  actual neg      {cm['tn']:>13}   {cm['fp']:>13}",
        f"  actual pos      {cm['fn']:>13}   {cm['tp']:>13}",
        f"time             {report.seconds:.2f} s",
    ]
    return "\n".join(lines)
