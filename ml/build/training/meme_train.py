"""Train the meme fusion head on data in the Hateful Memes layout and write a complete model version.

Features per meme: [hatesonar hate/offensive/neither, P(profane), P(nsfw), MiniLM caption embedding
(384), CLIP ViT-B/16 image embedding (512)], from the same ONNX files the pipeline runs. The head is a
logistic regression on standardised features fitted with Adam in numpy (no torch needed), saved as
``fusion_head.npz``. ``out`` becomes a loadable version folder (e.g. ``<repository>/meme/2``): the base
version's files are copied in, so the manifest's sha256 list covers the head and what feeds it.

The caption is the dataset's ``text`` field (as in the benchmark); OCR is not run during training.
The FP32 MiniLM is used and the INT8 copy is left out of the trained version, so the features at
run time are the ones the head was fitted on.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ml.build.datasets.hateful_memes import MemeRecord, read_split
from ml.build.logistic import LogisticRegression, base_rate_logit
from ml.build.metrics import auroc
from ml.fusion import FusionHead, feature_matrix
from ml.manifest import MANIFEST, Manifest, file_entry
from ml.text_models import clean_text

if TYPE_CHECKING:
    from ml.pipelines.meme import MemePipeline

LEFT_OUT_ROLES = ("embedder.int8", "fusion_head")


@dataclass
class TrainReport:
    seed: int
    epochs: int
    train_size: int
    dev_size: int
    train_positive: int
    dev_positive: int
    features: int
    train_loss: float
    train_auroc: float | None
    dev_auroc: float | None
    dev_accuracy: float
    threshold: float
    seconds: float
    version_dir: str
    base: str
    data_sha256: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def fit_logistic(x: np.ndarray, y: np.ndarray, seed: int, epochs: int, lr: float = 0.01,
                 l2: float = 1e-2, batch: int = 64) -> tuple[FusionHead, float]:
    """The shared logistic trainer, returned as the runtime's FusionHead, and its final train loss."""
    model = LogisticRegression(x.shape[1], l2=l2, lr=lr, bias=base_rate_logit(y))
    loss = model.fit(x, y, epochs=epochs, batch=batch, seed=seed)
    assert model.mean is not None and model.scale is not None
    head = FusionHead(mean=model.mean.astype(np.float32), scale=model.scale.astype(np.float32),
                      weights=model.w.astype(np.float32), bias=model.b, threshold=0.5)
    return head, loss


def extract_features(pipeline: MemePipeline, records: list[MemeRecord], batch: int = 16) -> np.ndarray:
    """Feature rows for ``records`` with the pipeline's own branches (``MemePipeline.branch_scores``)."""
    rows = []
    for start in range(0, len(records), batch):
        chunk = records[start:start + batch]
        texts = [clean_text(r.text)[0] for r in chunk]
        frames = [r.load_rgb() for r in chunk]
        rows.append(feature_matrix(pipeline.branch_scores(texts, frames)))
    return np.concatenate(rows) if rows else np.zeros((0, 901), np.float32)


def _labelled(data_dir: Path, splits: tuple[str, ...]) -> tuple[str, list[MemeRecord]]:
    for split in splits:
        if (data_dir / f"{split}.jsonl").is_file():
            records = read_split(data_dir, split)
            if any(r.label is None for r in records):
                raise ValueError(f"{split}.jsonl has records without a label")
            if not records:
                raise ValueError(f"{split}.jsonl is empty")
            return split, records
    raise ValueError(f"{data_dir} has none of {', '.join(s + '.jsonl' for s in splits)}")


def _copy_base(base: Manifest, out: Path) -> dict[str, dict[str, str]]:
    base.verify()
    files = {}
    for role, entry in base.files.items():
        if role in LEFT_OUT_ROLES:
            continue
        target = out / entry["path"]
        shutil.copyfile(base.directory / entry["path"], target)
        files[role] = file_entry(out, target)
    if (base.directory / "licences").is_dir():
        shutil.copytree(base.directory / "licences", out / "licences", dirs_exist_ok=True)
    return files


def train(data_dir: Path, out: Path, seed: int = 0, epochs: int = 100, base: Path | None = None,
          threads: int = 1) -> TrainReport:
    """Fit the head on ``train.jsonl``, measure on ``dev.jsonl`` and write the version folder ``out``."""
    from ml.build.builders.meme import write_card
    from ml.pipelines.meme import MemePipeline

    started = time.perf_counter()
    if (out / MANIFEST).exists():
        raise ValueError(f"{out} already holds a model version; choose a new folder")
    train_split, train_records = _labelled(data_dir, ("train",))
    dev_split, dev_records = _labelled(data_dir, ("dev", "dev_seen", "dev_unseen"))
    with tempfile.TemporaryDirectory() as scratch:
        if base is None:
            from ml.build.builders.meme import build

            base_manifest = build(Path(scratch), force=True)
        else:
            base_manifest = Manifest.load(base)
        out.mkdir(parents=True, exist_ok=True)
        files = _copy_base(base_manifest, out)
    manifest = Manifest(**{**base_manifest.__dict__, "directory": out, "version": out.name, "files": files})
    pipeline = MemePipeline(manifest, ["CPUExecutionProvider"], threads, embeddings=True)

    x_train = extract_features(pipeline, train_records)
    y_train = np.array([r.label for r in train_records], np.float64)
    x_dev = extract_features(pipeline, dev_records)
    y_dev = np.array([r.label for r in dev_records], np.float64)
    head, loss = fit_logistic(x_train.astype(np.float64), y_train, seed=seed, epochs=epochs)
    dev_scores = head.score_features(x_dev)
    head_path = out / "fusion_head.npz"
    head.save(head_path)

    report = TrainReport(
        seed=seed, epochs=epochs, train_size=len(train_records), dev_size=len(dev_records),
        train_positive=int(y_train.sum()), dev_positive=int(y_dev.sum()), features=int(x_train.shape[1]),
        train_loss=loss, train_auroc=auroc(y_train, head.score_features(x_train)),
        dev_auroc=auroc(y_dev, dev_scores), dev_accuracy=float(np.mean((dev_scores >= head.threshold) == y_dev)),
        threshold=head.threshold, seconds=0.0, version_dir=str(out),
        base=f"{base_manifest.name}/{base_manifest.version}" if base is not None else "fresh build",
        data_sha256={f"{s}.jsonl": hashlib.sha256((data_dir / f"{s}.jsonl").read_bytes()).hexdigest()
                     for s in (train_split, dev_split)},
        notes=[f"train split {train_split}.jsonl, dev split {dev_split}.jsonl; captions from the data set's "
               "text field, not OCR", "threshold fixed at 0.5, not tuned on dev"],
    )
    report.seconds = round(time.perf_counter() - started, 2)
    manifest.files["fusion_head"] = file_entry(out, head_path)
    manifest.thresholds = {"hateful": head.threshold}
    manifest.provenance = {**manifest.provenance, "fusion": "logistic head trained by deepscreen train meme",
                           "training": {k: v for k, v in report.to_json().items() if k != "version_dir"}}
    dev_text = (f"dev AUROC {report.dev_auroc}, accuracy {report.dev_accuracy:.3f} on {report.dev_size} "
                f"memes ({report.dev_positive} hateful) from `{data_dir.name}/{dev_split}.jsonl`.")
    write_card(manifest, training=f"{report.train_size} memes ({report.train_positive} hateful) from "
                                  f"`{data_dir.name}/{train_split}.jsonl`, seed {seed}, {epochs} epochs.",
               evaluation=dev_text)
    manifest.save()
    (out / "train_report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return report
