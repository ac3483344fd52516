"""How well a face detector finds the real faces available offline, and how its boxes agree with MTCNN's.

Build time (skimage, matplotlib sample data). The sets, each image with its reference face boxes:

- ``astronaut``, ``grace_hopper``: the two bundled portraits (512 px, 1 face each; reference boxes are
  MTCNN's at min face 20, checked by eye);
- ``lfw_full_frame``: skimage's 100 LFW faces (25 px grey), upscaled x4 to 100 px: the face fills the
  photo, like a passport crop (reference: LFW_BOX, where MTCNN puts these aligned faces on average);
- ``lfw_in_scene``: the same 100 px faces pasted at seeded positions into face-less 512x384 scenes;
- ``test_frames``: the panning astronaut frames the video tests encode (tests/ml/conftest.py);
- ``small_faces``: the two portraits shrunk so the face is 24-192 px wide in a 1280x720 frame;
- ``no_face``: skimage photos without a person (every detection there is a false positive).

``recall`` is the share of reference faces a detector finds (a detection with IoU ≥ MATCH_IOU);
agreement is the share of MTCNN's own detections the other detector finds (IoU ≥ 0.5 between the two
detectors' boxes) and their mean IoU. Intervals are 95 % percentile bootstraps over images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ml.face_detection.common import Face, FaceDetector, iou

MATCH_IOU = 0.4  # detectors draw different boxes around the same face (BlazeFace square, MTCNN taller)
AGREE_IOU = 0.5
LFW_BOX = (0.05, 0.0, 0.79, 0.94)  # fraction of the crop: MTCNN's median box on the 100 LFW faces (min face 20)
ASTRONAUT_BOX = (179.0, 59.0, 267.0, 172.0)
HOPPER_BOX = (168.0, 106.0, 349.0, 337.0)


@dataclass
class Sample:
    image: np.ndarray
    boxes: list[tuple[float, float, float, float]]  # reference faces (empty: a face-less image)
    tag: str = ""  # e.g. the face size of a small_faces sample


@dataclass
class Score:
    """One detector on one set."""

    faces: int = 0
    found: list[int] = field(default_factory=list)  # per reference face: 1 if found
    false_positives: int = 0
    mtcnn_faces: int = 0
    agreed: list[int] = field(default_factory=list)  # per MTCNN detection: 1 if this detector has it too
    ious: list[float] = field(default_factory=list)  # IoU with MTCNN's box, for agreed faces

    def recall(self) -> float:
        return float(np.mean(self.found)) if self.found else float("nan")


def hopper() -> np.ndarray:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def lfw_faces(side: int = 100) -> list[np.ndarray]:
    from skimage import data

    grey = [np.rint(f * 255).astype(np.uint8) for f in data.lfw_subset()[:100]]
    return [cv2.resize(np.repeat(g[:, :, None], 3, axis=2), (side, side), interpolation=cv2.INTER_CUBIC) for g in grey]


def _scenes() -> list[np.ndarray]:
    from skimage import data

    return [cv2.resize(img, (512, 384), interpolation=cv2.INTER_AREA)
            for img in (data.coffee(), data.rocket(), data.chelsea(), data.hubble_deep_field())]


def _lfw_box(left: float, top: float, side: float) -> tuple[float, float, float, float]:
    a, b, c, d = LFW_BOX
    return (left + a * side, top + b * side, left + c * side, top + d * side)


def _paste(canvas: np.ndarray, picture: np.ndarray, left: int, top: int) -> np.ndarray:
    out = canvas.copy()
    out[top: top + picture.shape[0], left: left + picture.shape[1]] = picture
    return out


def small_faces(sizes: tuple[int, ...] = (24, 32, 48, 64, 96, 128, 192)) -> list[Sample]:
    """Each portrait scaled so its face is ``size`` px wide, centred in a 1280x720 face-less frame."""
    backdrop = cv2.resize(_scenes()[0], (1280, 720), interpolation=cv2.INTER_LINEAR)
    out = []
    for image, box in ((astronaut(), ASTRONAUT_BOX), (hopper(), HOPPER_BOX)):
        for size in sizes:
            f = size / (box[2] - box[0])
            scaled = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)[:720, :1280]
            left, top = (1280 - scaled.shape[1]) // 2, (720 - scaled.shape[0]) // 2
            ref = (left + box[0] * f, top + box[1] * f, left + box[2] * f, top + box[3] * f)
            out.append(Sample(_paste(backdrop, scaled, left, top), [ref], tag=f"{size}px"))
    return out


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def test_frames(count: int = 20, size: int = 384) -> list[Sample]:
    """The conftest's panning astronaut: crop [40+i:, 60+i:] of the portrait, the face moving with it."""
    image = astronaut()
    out = []
    for i in range(count):
        x1, y1, x2, y2 = ASTRONAUT_BOX
        frame = np.ascontiguousarray(image[40 + i: 40 + i + size, 60 + i: 60 + i + size])
        out.append(Sample(frame, [(x1 - 60 - i, y1 - 40 - i, x2 - 60 - i, y2 - 40 - i)]))
    return out


def evaluation_sets() -> dict[str, list[Sample]]:
    from skimage import data

    faces = lfw_faces(100)
    rng = np.random.default_rng(0)
    scenes = _scenes()
    in_scene = []
    for k, face in enumerate(faces):
        left, top = int(rng.integers(0, 512 - 100)), int(rng.integers(0, 384 - 100))
        in_scene.append(Sample(_paste(scenes[k % len(scenes)], face, left, top), [_lfw_box(left, top, 100)]))
    no_face = [Sample(img, []) for img in (*scenes, data.coffee(), data.rocket(), data.chelsea(),
                                           np.repeat(data.moon()[:, :, None], 3, axis=2))]
    return {
        "astronaut": [Sample(astronaut(), [ASTRONAUT_BOX])],
        "grace_hopper": [Sample(hopper(), [HOPPER_BOX])],
        "lfw_full_frame": [Sample(f, [_lfw_box(0, 0, 100)]) for f in faces],
        "lfw_in_scene": in_scene,
        "test_frames": test_frames(),
        "small_faces": small_faces(),
        "no_face": no_face,
    }


def score_set(samples: list[Sample], found: list[list[Face]], mtcnn: list[list[Face]]) -> Score:
    score = Score()
    for sample, faces, reference in zip(samples, found, mtcnn, strict=True):
        used: set[int] = set()
        for box in sample.boxes:
            hits = [k for k, f in enumerate(faces) if k not in used and iou(f.box, box) >= MATCH_IOU]
            score.found.append(int(bool(hits)))
            used.update(hits[:1])
        score.faces += len(sample.boxes)
        score.false_positives += len(faces) - len(used)
        for ref in reference:
            best = max((iou(f.box, ref.box) for f in faces), default=0.0)
            score.mtcnn_faces += 1
            score.agreed.append(int(best >= AGREE_IOU))
            if best >= AGREE_IOU:
                score.ious.append(best)
    return score


def bootstrap_mean(values: list[int] | list[float], seed: int = 0, rounds: int = 2000) -> tuple[float, float]:
    """95 % percentile interval of the mean (over images or faces)."""
    if not values:
        return float("nan"), float("nan")
    data = np.asarray(values, dtype=float)
    means = np.random.default_rng(seed).choice(data, (rounds, len(data))).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def evaluate(
    detectors: dict[str, FaceDetector], sets: dict[str, list[Sample]] | None = None,
    reference: str = "mtcnn", batch: Callable[[FaceDetector, list[np.ndarray]], list[list[Face]]] | None = None,
) -> dict[str, dict[str, Score]]:
    """set -> detector -> Score; ``reference`` names the detector the others are compared with."""
    sets = sets if sets is not None else evaluation_sets()
    run = batch or (lambda d, frames: d.detect_batch(frames))
    out: dict[str, dict[str, Score]] = {}
    for name, samples in sets.items():
        frames = [s.image for s in samples]
        found = {k: run(d, frames) for k, d in detectors.items()}
        out[name] = {k: score_set(samples, f, found[reference]) for k, f in found.items()}
    return out
