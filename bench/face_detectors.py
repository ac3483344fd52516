"""BlazeFace vs MTCNN side by side: recall and box agreement on the real faces available offline, and speed.

    python -m bench.face_detectors [--threads 1] [--repeats 20] [--alternatives] [--record]
                                   [--pipeline model_repository [--version 1] [--seconds 10]]

Accuracy: the sets of ml/build/face_eval.py (skimage astronaut, matplotlib's Grace Hopper, skimage's 100
LFW faces full-frame and pasted into scenes, the test suite's panning video frames, faces shrunk to
24-192 px in 1280x720 frames, face-less photos). MTCNN runs as deepfake/1 ships it (min face 40);
BlazeFace as ml/build/face_detectors.py ships it (short range, 128 px letterbox, 256 px re-search of
frames without a face). ``--alternatives`` adds the variants that were not chosen (128 px alone, with a
letterbox margin; the full-range model).

Speed: 512 px one-face photos (the astronaut, Grace Hopper scaled to 512 px), one process, ``--threads``
ONNX Runtime threads: ms per image at batch 1, images/s at batch 8 and 32 (detector only: letterbox,
session, decoding, NMS). ``--pipeline`` also times the whole deepfake stage (detect, crop, classify)
with each detector on the same classifier, in one process and in two 1-thread processes (the 2-core
machine's best layout). ``--record`` writes the figures the model card quotes
(ml/build/face_detectors_eval.json); with BLAZEFACE_REFERENCE_PYTHON set to a python that has
``ai-edge-litert``, also the parity with the original .tflite.
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


def _pipelines(repository: Path, folder: Path, version: str | None) -> dict[str, Path]:
    """A deepfake version as built (its own detector) and the same classifier with the other detector."""
    from ml.build.face_detectors import with_detector
    from ml.repository import ModelRepository

    source = ModelRepository(repository).manifest("deepfake", version)
    own = str(source.options.get("detector", "mtcnn"))
    other = "blazeface" if own == "mtcnn" else "mtcnn"
    with_detector(source, other, folder / "deepfake" / "0", "0")
    return {own: source.directory, other: folder / "deepfake" / "0"}


def _pipeline_rate(directory: str, batch: int, seconds: float, result: Any = None) -> float:
    """Images/s of the deepfake pipeline in this process (1 ORT thread) over ~``seconds`` of batches."""
    from ml.manifest import Manifest
    from ml.pipelines.deepfake import DeepfakePipeline
    from ml.types import MediaItem

    pipeline = DeepfakePipeline(Manifest.load(Path(directory)), [CPU], threads=1)
    photos = photos_512()
    items = [MediaItem(kind="image", frames=[photos[k % len(photos)]]) for k in range(batch)]
    pipeline.predict(items)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        pipeline.predict(items)
        done += batch
    rate = done / (time.perf_counter() - start)
    if result is not None:
        result.put(rate)
    return rate


def pipeline_speeds(repository: Path, seconds: float, version: str | None = None) -> dict[str, dict[str, float]]:
    """Whole deepfake stage (detect, crop, classify) on 512 px one-face photos: one process at batch 1, 8,
    32, and two processes x 1 thread at batch 8 (this machine's 2 cores), images/s."""
    import multiprocessing

    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, directory in _pipelines(repository, Path(tmp), version).items():
            row = {f"batch{b}": round(_pipeline_rate(str(directory), b, seconds), 1) for b in SPEED_BATCHES}
            ctx = multiprocessing.get_context("spawn")
            queue = ctx.Queue()
            workers = [ctx.Process(target=_pipeline_rate, args=(str(directory), 8, seconds, queue)) for _ in range(2)]
            for w in workers:
                w.start()
            rates = [queue.get() for _ in workers]
            for w in workers:
                w.join()
            row["two_processes_batch8"] = round(sum(rates), 1)
            out[name] = row
    return out


def pipeline_table(speeds: dict[str, dict[str, float]], version: str) -> str:
    rows = [f"| deepfake/{version}'s classifier with (1 ORT thread per process) | images/s batch 1 | batch 8 "
            "| batch 32 | 2 processes, batch 8 |", "|---|---|---|---|---|"]
    for name, s in speeds.items():
        rows.append(f"| {name} | {s['batch1']} | {s['batch8']} | {s['batch32']} | {s['two_processes_batch8']} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--alternatives", action="store_true", help="also the rejected BlazeFace variants")
    parser.add_argument("--record", action="store_true", help=f"write the card's figures to {EVAL}")
    parser.add_argument("--pipeline", type=Path, metavar="REPOSITORY",
                        help="also time the whole deepfake stage with each detector (deepfake built in REPOSITORY)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per pipeline measurement")
    parser.add_argument("--version", default="1", help="the deepfake version whose classifier --pipeline times")
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
    stage = pipeline_speeds(args.pipeline, args.seconds, args.version) if args.pipeline else {}
    if stage:
        print("\n" + pipeline_table(stage, args.version))
    if args.record:
        record(results, table, small, speeds, args.threads, stage, args.version)


def record(results: dict[str, dict[str, Score]], table: str, small: str, speeds: dict[str, dict[str, float]],
           threads: int, stage: dict[str, dict[str, float]], version: str) -> None:
    from ml.build.blazeface_export import litert_parity, parity_images

    tags = [s.tag for s in evaluation_sets()["small_faces"]]
    hits: dict[int, list[int]] = {}
    for tag, hit in zip(tags, results["small_faces"]["blazeface"].found, strict=True):
        hits.setdefault(int(tag[:-2]), []).append(hit)
    every = min((size for size, h in hits.items() if all(h)), default=None)
    some = min((size for size, h in hits.items() if any(h)), default=None)
    found_all = sum(per["blazeface"].found.count(1) for per in results.values())
    faces = sum(per["blazeface"].faces for per in results.values())
    agreed = [a for name, per in results.items() if name != "small_faces" for a in per["blazeface"].agreed]
    summary = (f"BlazeFace found {found_all}/{faces} reference faces (MTCNN "
               f"{sum(per['mtcnn'].found.count(1) for per in results.values())}/{faces}); outside the "
               f"small-face set it found {sum(agreed)}/{len(agreed)} of MTCNN's detections")
    scene = results["lfw_in_scene"]
    figures: dict[str, Any] = {
        "date": str(date.today()), "summary": summary, "card_table": table + "\n\n" + small,
        "speed": {"threads": threads, "load_average": round(os.getloadavg()[0], 1), **speeds},
        "speed_table": speed_table(speeds, threads) + ("\n\n" + pipeline_table(stage, version) if stage else ""),
        "stage_speed": stage,
        "limits": (f"it misses faces that are small relative to the frame. In 1280x720 frames it found both "
                   f"portraits from {every} px face width on (one of the two from {some} px), MTCNN every size "
                   f"down to 24 px; of the LFW faces pasted into 512x384 scenes (~15 % of the width) it found "
                   f"{scene['blazeface'].recall():.0%}, MTCNN {scene['mtcnn'].recall():.0%}."),
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
