"""Peak RSS of an inference worker process with the default models loaded, at batch 1 and at BATCH_MAX.

Each measurement is a fresh process that does what a worker process does, with the worker's own code:
``workers.model_cache.preload(DEFAULT_MODELS)`` (as at worker start), then ``workers.batch.infer`` over
one batch of decoded media (``ml.decode.decode`` from stored bytes, as ``workers.batch.prepare`` does).
Peak RSS is the kernel's high-water mark, VmHWM in /proc/<pid>/status, read after loading and after
the batch. Media: 512 px one-face photos (deepfake finds a face; meme reads the image with OCR, no
caption given), and optionally short clips (MAX_VIDEO_FRAMES frames each: the worst case for memory).

    .venv/bin/python bench/worker_memory.py [--batches 1,8] [--media photo,video] [--models deepfake,meme]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, Shared, add_repository_argument, header, int_list, own_cpu_seconds, table


def _clip(seed: int, frames: int = 48) -> bytes:
    """A short MP4 (OpenCV's mp4v) panning over a one-face photo."""
    import cv2
    import numpy as np

    from bench.photos import face_photos

    photo = cv2.imdecode(np.frombuffer(face_photos(1, seed)[0], np.uint8), cv2.IMREAD_COLOR)
    assert photo is not None
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "clip.mp4")
        writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"mp4v"), 12, (480, 360))
        for i in range(frames):
            writer.write(cv2.resize(photo[i: i + 448, i: i + 448], (480, 360)))
        writer.release()
        return Path(path).read_bytes()


def child(batch: int, media: str) -> dict[str, Any]:
    """Runs in the measured process: load like a worker, screen one batch, report VmHWM."""
    from bench.photos import face_photos
    from bench.proc_cpu import vm_hwm_kib
    from core.job_queue import ClaimedJob
    from core.settings import get_settings
    from ml.decode import DecodeLimits, decode
    from workers import model_cache
    from workers.batch import BatchTimer, Prepared, infer

    settings = get_settings()
    repo = model_cache.repository()
    newest = {name: repo.versions(name)[-1] for name in settings.model_names}  # no database here: the newest

    def pipeline(name: str):  # type: ignore[no-untyped-def]
        return model_cache.get_pipeline(name, newest[name])

    baseline = vm_hwm_kib(os.getpid()) or 0
    for name in settings.model_names:
        pipeline(name)
    loaded = vm_hwm_kib(os.getpid()) or 0
    limits = DecodeLimits(settings.max_image_pixels, settings.max_video_seconds, settings.max_video_frames)
    blobs = [(_clip(i), "mp4") for i in range(batch)] if media == "video" else \
        [(b, "jpeg") for b in face_photos(batch, seed=7)]
    now = datetime.now(UTC)
    prepared = []
    for i, (blob, fmt) in enumerate(blobs):
        job = ClaimedJob(f"job-{i}", "bench", None, settings.model_names, 1, 0, now, now, None,
                         {"format": fmt, "storage_key": f"k{i}"})
        prepared.append(Prepared(job, item=decode(blob, fmt, limits)))
    outcomes = infer(prepared, pipeline, BatchTimer())
    failed = [o.error for o in outcomes if o.error]
    return {"batch": batch, "media": media, "python_kib": baseline, "loaded_kib": loaded,
            "peak_kib": vm_hwm_kib(os.getpid()) or 0, "failed": failed,
            "models": sorted(model_cache.loaded())}


def measure(batch: int, media: str, env: dict[str, str]) -> dict[str, Any]:
    code = (f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); from bench.worker_memory import child; "
            f"print('RESULT ' + json.dumps(child({batch}, {media!r})))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise RuntimeError(f"the measured process failed:\n{out.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default=f"1,{os.environ.get('BATCH_MAX', '8')}",
                        help="batch sizes (default: 1 and BATCH_MAX)")
    parser.add_argument("--media", default="photo", help="photo, video or photo,video")
    parser.add_argument("--models", default="", help="DEFAULT_MODELS for the worker (default: the setting's default)")
    add_repository_argument(parser)
    args = parser.parse_args(argv)

    shared = Shared().start()
    with tempfile.TemporaryDirectory(prefix="ds-bench-mem-") as data_dir:
        env = {**os.environ, "MODEL_REPOSITORY": str(args.repository), "LOG_LEVEL": "WARNING", "DATA_DIR": data_dir}
        if args.models:
            env["DEFAULT_MODELS"] = args.models
        rows = [measure(b, m, env) for m in args.media.split(",") for b in int_list(args.batches)]
    shared.stop(own_cpu_seconds())
    models = ", ".join(rows[0]["models"]) if rows else "-"
    print(header(f"inference worker peak RSS (VmHWM), models {models}, ONNX threads "
                 f"{os.environ.get('ONNX_INTRA_OP_THREADS', '1')}", shared))
    mib = 1 / 1024
    print(table(["media", "batch", "python + imports MiB", "models loaded MiB", "peak after the batch MiB",
                 "failed jobs"],
                [[r["media"], r["batch"], r["python_kib"] * mib, r["loaded_kib"] * mib,
                  r["peak_kib"] * mib, len(r["failed"])] for r in rows]))
    return 0 if all(not r["failed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
