"""BlazeFace vs MTCNN side by side: recall and box agreement on the real faces available offline, and speed.

    python -m bench.face_detectors [--threads 1] [--repeats 20] [--alternatives] [--record]

Accuracy: the sets of ml/build/face_eval.py (skimage astronaut, matplotlib's Grace Hopper, skimage's 100
LFW faces full-frame and pasted into scenes, the test suite's panning video frames, faces shrunk to
24-192 px in 1280x720 frames, face-less photos). MTCNN runs as deepfake/1 ships it (min face 40);
BlazeFace as ml/build/face_detectors.py ships it (short range, 128 px letterbox). ``--alternatives``
adds the variants that were not chosen (a letterbox margin; the full-range model).

Speed: 512 px one-face photos (the astronaut, Grace Hopper scaled to 512 px), one process, ``--threads``
ONNX Runtime threads: ms per image at batch 1, images/s at batch 8 and 32 (detector only: letterbox,
session, decoding, NMS). ``--record`` writes the figures the model card quotes
(ml/build/face_detectors_eval.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ml.build.face_detectors import EVAL, MTCNN_MIN_FACE, detector_files, detector_options
from ml.build.face_eval import Score, astronaut, bootstrap_mean, evaluate, evaluation_sets, hopper
from ml.build.faces import mtcnn_files
from ml.face_detection.common import FaceDetector
from ml.face_detection.factory import build_detector
from ml.runtime import CPU, make_session

SPEED_BATCHES = (1, 8, 32)


def detectors(folder: Path, threads: int, alternatives: bool) -> dict[str, FaceDetector]:
    """MTCNN as deepfake/1 ships it and BlazeFace as face_detectors ships it (plus the rejected variants)."""
    files = {role: path for role, path in detector_files("blazeface", folder).items()}
    mt = mtcnn_files()
    files.update({f"detector.{k}": v for k, v in mt.items()})
    sessions = {role: make_session(path, [CPU], threads) for role, path in files.items()}
    out = {
        "mtcnn": build_detector({"detector": "mtcnn", "min_face": MTCNN_MIN_FACE}, sessions.__getitem__),
        "blazeface": build_detector(detector_options("blazeface"), sessions.__getitem__),
    }
    if alternatives:
        import onnx

        from ml.build.blazeface_export import VARIANTS, tflite_path, to_onnx

        shipped = detector_options("blazeface")
        out["blazeface 128 only"] = build_detector({**shipped, "fine_pass": False}, sessions.__getitem__)
        out["blazeface 128 only, margin 0.15"] = build_detector(
            {**shipped, "fine_pass": False, "letterbox_margin": 0.15}, sessions.__getitem__)
        full = folder / "full_range.onnx"
        onnx.save(to_onnx(tflite_path("full_range"), VARIANTS["full_range"]), str(full))
        full_session = make_session(full, [CPU], threads)
        out["blazeface full range 192"] = build_detector(
            {**shipped, "fine_pass": False, "score_threshold": 0.6}, lambda role: full_session)
    return out


def _ci(values: list[int] | list[float]) -> str:
    if not values:
        return "n/a"
    lo, hi = bootstrap_mean(values)
    return f"{np.mean(values):.2f} [{lo:.2f}, {hi:.2f}]"


def accuracy_table(results: dict[str, dict[str, Score]], names: list[str]) -> str:
    head = "| set | faces | " + " | ".join(f"recall {n}" for n in names) + " | " + " | ".join(
        f"{n}: MTCNN's faces found, mean IoU" for n in names[1:]) + " | false positives " + "/".join(names) + " |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for set_name, per in results.items():
        ref = per[names[0]]
        cells = [set_name, str(ref.faces)]
        cells += [_ci(per[n].found) for n in names]
        cells += [f"{_ci(per[n].agreed)} of {per[n].mtcnn_faces}, {np.mean(per[n].ious):.2f}" if per[n].ious
                  else f"0 of {per[n].mtcnn_faces}" for n in names[1:]]
        cells.append("/".join(str(per[n].false_positives) for n in names))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def small_face_table(results: dict[str, dict[str, Score]], tags: list[str], names: list[str]) -> str:
    sizes = sorted(set(tags), key=lambda t: int(t[:-2]))
    rows = ["| face width in a 1280x720 frame | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for size in sizes:
        picks = [k for k, t in enumerate(tags) if t == size]
        rows.append(f"| {size} | " + " | ".join(
            f"{sum(results['small_faces'][n].found[k] for k in picks)}/{len(picks)}" for n in names) + " |")
    return "\n".join(rows)


def photos_512() -> list[np.ndarray]:
    h = hopper()
    scale = 512 / max(h.shape[:2])
    return [astronaut(), cv2.resize(h, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)]


def speed(detector: FaceDetector, repeats: int) -> dict[str, float]:
    photos = photos_512()
    out: dict[str, float] = {}
    for batch in SPEED_BATCHES:
        frames = [photos[k % len(photos)] for k in range(batch)]
        detector.detect_batch(frames)  # warm-up
        samples = []
        for _ in range(max(1, repeats if batch < 32 else repeats // 4)):
            start = time.perf_counter()
            detector.detect_batch(frames)
            samples.append(time.perf_counter() - start)
        seconds = statistics.median(samples)
        out[f"ms_per_image_batch{batch}"] = round(1000 * seconds / batch, 2)
        out[f"images_per_s_batch{batch}"] = round(batch / seconds, 1)
    return out


def speed_table(speeds: dict[str, dict[str, float]], threads: int) -> str:
    rows = [f"| detector ({threads} ORT thread{'s' if threads > 1 else ''}) | ms/image, batch 1 | images/s, batch 8 "
            "| images/s, batch 32 |", "|---|---|---|---|"]
    for name, s in speeds.items():
        rows.append(f"| {name} | {s['ms_per_image_batch1']} | {s['images_per_s_batch8']} | "
                    f"{s['images_per_s_batch32']} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--alternatives", action="store_true", help="also the rejected BlazeFace variants")
    parser.add_argument("--record", action="store_true", help=f"write the card's figures to {EVAL}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        found = detectors(Path(tmp), args.threads, args.alternatives)
        sets = evaluation_sets()
        results = evaluate(found, sets)
        names = list(found)
        table = accuracy_table(results, names)
        small = small_face_table(results, [s.tag for s in sets["small_faces"]], names)
        speeds = {name: speed(found[name], args.repeats) for name in ("mtcnn", "blazeface")}
    load = os.getloadavg()
    print(f"# face detectors on {platform.machine()} ({os.cpu_count()} CPUs), load average {load[0]:.1f} "
          f"at the end, {date.today()}\n")
    print(table, "\n")
    print(small, "\n")
    print(speed_table(speeds, args.threads))
    if args.record:
        record(results, table, small, speeds, args.threads)


def record(results: dict[str, dict[str, Score]], table: str, small: str, speeds: dict[str, dict[str, float]],
           threads: int) -> None:
    from ml.build.blazeface_export import litert_parity, parity_images

    smallest = [t for t, hit in zip([s.tag for s in evaluation_sets()["small_faces"]],
                                    results["small_faces"]["blazeface"].found, strict=True) if hit]
    found_all = sum(per["blazeface"].found.count(1) for name, per in results.items())
    faces = sum(per["blazeface"].faces for per in results.values())
    agreed = [a for name, per in results.items() if name != "small_faces" for a in per["blazeface"].agreed]
    summary = (f"BlazeFace found {found_all}/{faces} reference faces (MTCNN "
               f"{sum(per['mtcnn'].found.count(1) for per in results.values())}/{faces}); outside the "
               f"small-face set it found {sum(agreed)}/{len(agreed)} of MTCNN's detections")
    figures: dict[str, Any] = {
        "date": str(date.today()), "summary": summary, "card_table": table + "\n\n" + small,
        "speed": {"threads": threads, **speeds},
        "limits": (f"the short-range model misses faces that are small relative to the frame: in 1280x720 frames "
                   f"it found only faces from {min(smallest, key=lambda t: int(t[:-2])) if smallest else 'none'} "
                   "wide (MTCNN: all sizes from 24 px), and it found fewer of the LFW faces pasted at ~15 % of a "
                   "512 px scene than MTCNN (table)."),
    }
    python = os.environ.get("BLAZEFACE_REFERENCE_PYTHON")
    if python:
        check = litert_parity("short_range", parity_images(128), python)
        figures["parity"] = (f"vs the original .tflite run by ai-edge-litert 2.3.0 on {check['n_images']} images: "
                             f"max |Δ| {check['raw_regressor_max_abs_diff_px']:.1e} px on the regressors, "
                             f"{check['score_max_abs_diff']:.1e} on the scores")
        figures["parity_check"] = check
    EVAL.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwrote {EVAL}")


if __name__ == "__main__":
    main()
