"""The detector a manifest names: ``options["detector"]`` ("mtcnn" when absent, so manifests written
before BlazeFace keep working) with its own options and ONNX roles.

Sessions come from the caller (a Pipeline's ``session``), which picks the precision variant for the
provider it really got (``detector.blazeface.fp16`` only on a live CUDA provider) and records it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from onnxruntime import InferenceSession

from ml.face_detection.blazeface import BlazeFace
from ml.face_detection.common import FaceDetector
from ml.face_detection.mtcnn import MTCNN
from ml.manifest import ModelError
from ml.runtime import on_cuda

DEFAULT = "mtcnn"
KINDS = ("mtcnn", "blazeface")
MTCNN_ROLES = ("detector.pnet", "detector.rnet", "detector.onet")
# One BlazeFace call on CUDA takes at most this many frames unless the manifest says otherwise
# (``detector_max_batch_cuda``). Measured on an H200 (docs/benchmarks.md, 2026-11-28): the CUDA call's
# cost per frame was 1.3 ms at batch 8 and 12-27 ms at 32-256, so bigger calls only lose there; on the
# CPU EP bigger calls keep getting cheaper, and ``detector_max_batch`` (64) applies.
CUDA_DETECTOR_BATCH = 8
BLAZEFACE_ROLE = "detector.blazeface"  # FP32; ``detector.blazeface.fp16`` beside it for CUDA
BLAZEFACE_FINE_ROLE = "detector.blazeface_fine"  # the same net at 2x, when options["fine_pass"]


def detector_kind(options: Mapping[str, Any]) -> str:
    kind = str(options.get("detector", DEFAULT))
    if kind not in KINDS:
        raise ModelError("unknown_detector", f"unknown face detector {kind!r}; known: {', '.join(KINDS)}")
    return kind


def build_detector(options: Mapping[str, Any], session: Callable[[str], InferenceSession]) -> FaceDetector:
    """A ready detector from manifest ``options`` and a ``session(role)`` factory."""
    if detector_kind(options) == "blazeface":
        adjust = options.get("box_adjust")
        coarse = session(BLAZEFACE_ROLE)
        cuda = on_cuda(coarse)
        max_batch = (options.get("detector_max_batch_cuda", CUDA_DETECTOR_BATCH) if cuda
                     else options.get("detector_max_batch", 64))
        return BlazeFace(
            coarse, score_threshold=float(options.get("score_threshold", 0.5)),
            nms_threshold=float(options.get("nms_threshold", 0.3)), margin=float(options.get("letterbox_margin", 0.0)),
            min_face=float(options.get("min_face", 0)), max_batch=int(max_batch),
            box_adjust=tuple(adjust) if adjust else None,
            fine_session=session(BLAZEFACE_FINE_ROLE) if options.get("fine_pass") else None,
            fine_threshold=float(options.get("fine_threshold", 0.7)), pad_batches=cuda,
        )
    pnet, rnet, onet = (session(role) for role in MTCNN_ROLES)
    return MTCNN(pnet, rnet, onet, min_face=int(options.get("min_face", 40)),
                 thresholds=options.get("detector_thresholds", (0.6, 0.7, 0.7)),
                 max_side=int(options.get("max_side", 1280)))
