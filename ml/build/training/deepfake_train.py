"""Train the deepfake head with the SBI recipe on a folder of real face photos.

Two modes share the face loading, the split and the SBI pairs here: this module's ``train`` keeps the
backbone frozen; ``ml.build.training.deepfake_finetune`` trains it end to end (given faces and time).
In the frozen mode the EfficientNet-Lite0 backbone keeps its ImageNet weights, so training is: detect
the face in each photo, cut the classifier's crop, make a real sample and a self-blended pseudo-fake
from it (fresh augmentations and blends every epoch), run the backbone ONNX to get 1280-d features, and
fit a logistic-regression head on them with Adam. That runs on two CPU cores in seconds to minutes.

Photos are split *by photo* into train / held-out before any augmentation, so no view of a held-out
face is ever trained on; the held-out AUROC is real vs SBI pseudo-fakes of unseen faces. It is not a
measurement on real deepfakes, and the report says so.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ml.build.efficientnet import export_classifier
from ml.build.faces import MIN_DETECT_SIDE, cpu_detector, main_face, read_rgb
from ml.build.logistic import LogisticRegression, sigmoid
from ml.build.metrics import auroc, eer_threshold
from ml.build.training.sbi import self_blend
from ml.face_crops import DEFAULT_MARGIN, DEFAULT_SIZE, face_crop, to_batch
from ml.face_detection.common import Face

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
FLIP = [1, 0, 2, 4, 3]  # landmark order after a horizontal flip: eyes and mouth corners swap


@dataclass
class TrainReport:
    """What was trained on and how well it separates held-out real faces from their pseudo-fakes."""

    seed: int
    epochs: int
    images: list[dict[str, str]]  # {"path", "sha256"} of every photo used, relative to faces_dir
    skipped: list[str]  # photos in which no face was found
    train: list[str]
    held_out: list[str]
    train_samples: int
    held_out_samples: int
    train_loss: float
    held_out_auroc: float
    threshold: float  # equal-error-rate threshold on the held-out set
    seconds: float
    notes: list[str] = field(default_factory=list)
    mode: str = "head"  # "head": frozen backbone + logistic head; "fine_tune": backbone trained too
    device: str = "cpu"
    steps: int = 0  # optimiser steps (fine-tune)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _augmented_crop(
    image: np.ndarray, face: Face, rng: np.random.Generator, size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """A jittered, maybe flipped, relit crop and its landmarks: the same base for a real and a fake."""
    x1, y1, x2, y2 = face.box
    side = max(x2 - x1, y2 - y1)
    dx, dy = rng.uniform(-0.05, 0.05, size=2) * side
    grow = rng.uniform(-0.05, 0.08) * side
    box = (x1 + dx - grow, y1 + dy - grow, x2 + dx + grow, y2 + dy + grow)
    crop, moved = face_crop(image, box, DEFAULT_MARGIN, size, face.landmarks)
    assert moved is not None
    marks: np.ndarray = moved
    if rng.random() < 0.5:
        crop = np.ascontiguousarray(crop[:, ::-1])
        marks = marks[FLIP].copy()
        marks[:, 0] = size - 1 - marks[:, 0]
    gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    crop = np.clip(crop.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    return crop, marks


def _degrade(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lose resolution and pass through JPEG at random, real and fake alike, as uploads do.

    Without this the head learns "sharp means fake": most bundled faces are tiny upscaled LFW crops,
    and the only sharp faces would be the few large photos.
    """
    if rng.random() < 0.4:
        height, width = crop.shape[:2]
        factor = rng.uniform(0.15, 0.7)
        small = cv2.resize(crop, (max(8, int(width * factor)), max(8, int(height * factor))),
                           interpolation=cv2.INTER_AREA)
        crop = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.5:
        return crop
    ok, buf = cv2.imencode(".jpg", crop[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 96))])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    return crop if decoded is None else np.ascontiguousarray(decoded[:, :, ::-1])


def make_pairs(
    faces: list[tuple[np.ndarray, Face]], rng: np.random.Generator, size: int = DEFAULT_SIZE,
) -> tuple[list[np.ndarray], np.ndarray]:
    """One real and one SBI pseudo-fake crop per face; labels 0 = real, 1 = fake."""
    crops: list[np.ndarray] = []
    labels: list[int] = []
    for image, face in faces:
        base, marks = _augmented_crop(image, face, rng, size)
        crops += [_degrade(base, rng), _degrade(self_blend(base, marks, rng).image, rng)]
        labels += [0, 1]
    return crops, np.asarray(labels, dtype=np.float64)


def _features(session: Any, crops: list[np.ndarray], batch: int = 16) -> np.ndarray:
    name = session.get_inputs()[0].name
    out = [session.run(None, {name: to_batch(crops[i:i + batch])})[0] for i in range(0, len(crops), batch)]
    return np.concatenate(out).astype(np.float64)


@dataclass
class FaceSet:
    """The photos of a faces folder in which a face was found, split by photo into train / held-out."""

    found: dict[str, tuple[np.ndarray, Face]]  # name (relative path) -> (photo, its most confident face)
    skipped: list[str]  # photos in which no face was found
    sharp: set[str]  # photos large enough to need no upscaling
    train: list[str]
    held_out: list[str]

    def images(self, faces_dir: Path) -> list[dict[str, str]]:
        return [{"path": n, "sha256": _sha256(faces_dir / n)} for n in sorted(self.found)]


def load_faces(faces_dir: Path, rng: np.random.Generator, held_out: float = 0.2, limit: int | None = None) -> FaceSet:
    """Detect the main face of every photo under ``faces_dir`` (the first ``limit`` in name order) and
    split the photos, not their views, into train / held-out with ``rng``."""
    paths = sorted(p for p in faces_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    detector = cpu_detector()
    found: dict[str, tuple[np.ndarray, Face]] = {}
    skipped: list[str] = []
    sharp: set[str] = set()
    for path in paths:
        image = read_rgb(path)
        hit = main_face(detector, image)
        name = str(path.relative_to(faces_dir))
        if hit is None:
            skipped.append(name)
            continue
        found[name] = hit
        if min(image.shape[:2]) >= MIN_DETECT_SIDE:
            sharp.add(name)
    names = sorted(found)
    if len(names) < 2:
        raise ValueError(f"need faces in at least 2 photos under {faces_dir}; found {len(names)}")
    order = rng.permutation(len(names))
    n_test = min(len(names) - 1, max(1, round(len(names) * held_out)))
    return FaceSet(found=found, skipped=skipped, sharp=sharp,
                   train=sorted(names[i] for i in order[n_test:]), held_out=sorted(names[i] for i in order[:n_test]))


def equal_error_bias(labels: np.ndarray, scores: np.ndarray) -> float:
    """The bias shift (logit units) that moves the held-out equal-error point to p = 0.5: the DFDC
    aggregation's fixed 0.8 / 0.2 cut-offs and the manifest threshold then mean what they say."""
    eer = float(np.clip(eer_threshold(labels, scores), 1e-6, 1 - 1e-6))
    return -float(np.log(eer / (1 - eer)))


def train(
    faces_dir: Path, out: Path, seed: int = 0, epochs: int = 10, held_out: float = 0.2,
    held_out_views: int = 4, l2: float = 1e-2, lr: float = 1e-2, steps_per_epoch: int = 30,
    sharp_repeat: int = 10,
) -> TrainReport:
    """Train the head on the photos in ``faces_dir``; write ``out`` (.npz) and ``out`` with ``.json``.

    Photos large enough to need no upscaling are drawn ``sharp_repeat`` times per epoch (fresh views each
    time), so that sharp faces, real and blended, weigh as much as the many tiny ones.
    """
    from ml.runtime import CPU, make_session

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    faces = load_faces(faces_dir, rng, held_out)
    found, sharp = faces.found, faces.sharp

    with tempfile.TemporaryDirectory() as tmp:
        backbone = make_session(export_classifier(Path(tmp) / "backbone.onnx", head=None), [CPU], 0)
        test_faces = [found[n] for n in faces.held_out] * held_out_views
        test_crops, test_y = make_pairs(test_faces, np.random.default_rng(seed + 1))
        test_x = _features(backbone, test_crops)
        head = LogisticRegression(test_x.shape[1], l2=l2, lr=lr, scale_floor=0.05)
        loss, train_samples = float("nan"), 0
        for _ in range(epochs):
            drawn = [found[n] for n in faces.train for _ in range(sharp_repeat if n in sharp else 1)]
            crops, y = make_pairs(drawn, rng)  # fresh views and blends each epoch
            x = _features(backbone, crops)
            train_samples += len(y)
            head.standardise(x)  # fixes the standardisation on the first epoch's features
            for _ in range(steps_per_epoch):
                loss = head.step(x, y)
    weight, bias = head.folded()
    shift = equal_error_bias(test_y, sigmoid(test_x @ weight + bias))
    bias += shift
    scores = sigmoid(test_x @ weight + bias)
    report = TrainReport(
        seed=seed, epochs=epochs, images=faces.images(faces_dir), skipped=faces.skipped,
        train=faces.train, held_out=faces.held_out, train_samples=train_samples,
        held_out_samples=len(test_y), train_loss=loss, held_out_auroc=float(auroc(test_y, scores) or 0.0),
        threshold=eer_threshold(test_y, scores), seconds=round(time.perf_counter() - started, 1),
        notes=["held-out = real crops vs SBI pseudo-fakes of photos never trained on; not real deepfakes",
               f"photos needing no upscaling drawn {sharp_repeat}x per epoch: {sorted(sharp)}",
               f"bias shifted by {shift:+.3f} so the held-out equal-error point is p = 0.5"],
    )
    save_head(out, weight, bias, report)
    return report


def save_head(out: Path, weight: np.ndarray, bias: float, report: TrainReport, **extra: Any) -> None:
    """``out`` (.npz: the head the deepfake/1 builder reads) and its report ``out`` with ``.json``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, weight=weight, bias=np.float32(bias),
             threshold=np.float32(report.threshold), crop_size=DEFAULT_SIZE, margin=DEFAULT_MARGIN, **extra)
    out.with_suffix(".json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
