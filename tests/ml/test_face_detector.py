"""MTCNN on the real ONNX nets: a face where there is one, none on a cat, boxes that follow the face."""

from __future__ import annotations

import numpy as np
import pytest

from ml.build.faces import mtcnn_files
from ml.face_crops import face_crop, square_box, to_batch
from ml.face_detection.common import nms
from ml.face_detection.mtcnn import MTCNN
from ml.runtime import CPU, make_session


@pytest.fixture(scope="module")
def detector() -> MTCNN:
    files = mtcnn_files()
    return MTCNN(*(make_session(files[n], [CPU]) for n in ("pnet", "rnet", "onet")), min_face=40)


def _inside(point: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def test_astronaut_has_exactly_one_face(detector: MTCNN, astronaut_rgb: np.ndarray) -> None:
    faces = detector.detect(astronaut_rgb)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.9
    x1, y1, x2, y2 = face.box
    assert 60 < x2 - x1 < 160 and 60 < y2 - y1 < 160  # a head-sized box in a 512 px portrait
    assert face.landmarks.shape == (5, 2)
    assert all(_inside(p, face.box) for p in face.landmarks)
    left_eye, right_eye, nose, mouth_l, mouth_r = face.landmarks
    assert left_eye[0] < right_eye[0] and mouth_l[0] < mouth_r[0]  # (x, y), not transposed
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_l[1], mouth_r[1])


def test_cat_has_no_face(detector: MTCNN) -> None:
    from skimage import data

    assert detector.detect(data.chelsea()) == []


def test_box_follows_the_face(detector: MTCNN, astronaut_rgb: np.ndarray) -> None:
    (face,) = detector.detect(astronaut_rgb)
    shifted = np.zeros_like(astronaut_rgb)
    shifted[30:, 50:] = astronaut_rgb[:-30, :-50]
    (moved,) = detector.detect(shifted)
    assert np.allclose(np.subtract(moved.box, face.box), [50, 30, 50, 30], atol=6)
    mirrored = detector.detect(np.ascontiguousarray(astronaut_rgb[:, ::-1]))
    assert len(mirrored) == 1
    width = astronaut_rgb.shape[1]
    assert abs((mirrored[0].box[0] + mirrored[0].box[2]) / 2 - (width - (face.box[0] + face.box[2]) / 2)) < 8


def test_large_frames_are_searched_downscaled(detector: MTCNN, astronaut_rgb: np.ndarray) -> None:
    import cv2

    big = cv2.resize(astronaut_rgb, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    (face,) = detector.detect(astronaut_rgb)
    (scaled,) = detector.detect(big)
    assert np.allclose(np.asarray(scaled.box) / 4, face.box, atol=8)


def test_detect_batch_is_detect_per_frame(detector: MTCNN, astronaut_rgb: np.ndarray) -> None:
    from skimage import data

    frames = [astronaut_rgb, data.chelsea(), np.ascontiguousarray(astronaut_rgb[:, ::-1])]
    batched = detector.detect_batch(frames)
    assert detector.name == "mtcnn" and [len(f) for f in batched] == [1, 0, 1]
    for got, frame in zip(batched, frames, strict=True):
        assert [f.box for f in got] == [f.box for f in detector.detect(frame)]


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10, 0.9], [1, 1, 11, 11, 0.95], [50, 50, 60, 60, 0.5]], dtype=float)
    assert sorted(nms(boxes, 0.5).tolist()) == [1, 2]
    assert nms(np.empty((0, 5)), 0.5).size == 0


def test_crop_is_square_with_margin_and_padded_outside(astronaut_rgb: np.ndarray) -> None:
    left, top, side = square_box((100, 100, 200, 150), margin=0.3)
    assert side == 130 and (left, top) == (85, 60)
    crop, marks = face_crop(astronaut_rgb, (-50, -50, 50, 50), margin=0.3, size=64,
                            landmarks=np.array([[0.0, 0.0]]))
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert crop[:20, :20].max() == 0  # beyond the frame: black, not stretched
    assert np.allclose(marks, [[32, 32]], atol=1)  # the box centre lands in the crop centre
    batch = to_batch([crop, crop])
    assert batch.shape == (2, 3, 64, 64) and batch.dtype == np.float32
