"""One prepared GPU check for issue 7's GPU targets, to run in one go on a machine with a GPU:

    .venv/bin/python bench/gpu_check.py [--images 256] [--batches 1,8,32,64] [--json gpu.json] [--preload-cuda]

`--preload-cuda` loads CUDA / cuDNN from the Python environment first (torch's CUDA 13 and cuDNN 9
libraries where torch is installed, then `onnxruntime.preload_dlls()`), for hosts where they are pip
packages rather than system libraries.

1. Provider truth: onnxruntime's version and available providers, the card (nvidia-smi), and what
   every session of the deepfake pipeline really got (provider, precision: FP16 only on a live CUDA EP).
2. The deepfake ml stage with the CUDA EP (FP16 files) at each batch size, on distinct 512 px one-face
   photos: images/s with the photos decoded in advance (the model stage alone) and with decoding
   included (on a thread pool as wide as the cores, as the worker's fetch threads do).
3. The same stage with the CPU EP on the same box: one process with all cores as ONNX threads, and
   one 1-thread process per core (the better of the two is the reference).
4. The ratio. Targets: ≥ 1,000 images/s on the GPU; ≥ 20 x the CPU EP of the same box.

Without a CUDA EP (this 2-core CPU machine) it says so and measures the CPU path only, so the script
itself is tested everywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import deepfake_offline
from bench.common import Shared, add_repository_argument, cores, header, int_list, own_cpu_seconds, table
from bench.photos import face_photos

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
TARGET_RATE, TARGET_RATIO = 1000.0, 20.0


def card() -> str:
    if not shutil.which("nvidia-smi"):
        return "no nvidia-smi"
    out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or out.stderr.strip()


def stage_rates(pipeline: Any, blobs: list[bytes], batches: list[int], repeats: int) -> list[dict[str, Any]]:
    """images/s at each batch size: model stage alone (decoded in advance), and decode + model."""
    from ml.decode import DecodeLimits, decode

    limits = DecodeLimits()
    decoded = [decode(b, "jpeg", limits) for b in blobs]
    pool = ThreadPoolExecutor(max(1, cores()))
    rows = []
    for batch in batches:
        chunks = [decoded[i: i + batch] for i in range(0, len(decoded), batch)]
        for chunk in chunks[:2]:  # warm-up: kernels, arena, shape plans
            pipeline.predict(chunk)
        stages = {"detect": 0.0, "crop": 0.0, "classify": 0.0}
        started = time.perf_counter()
        for _ in range(repeats):
            for chunk in chunks:
                pipeline.predict(chunk)
                for key in stages:
                    stages[key] += getattr(pipeline, "last_timings", {}).get(key, 0.0)
        alone = repeats * len(decoded) / (time.perf_counter() - started)
        split = " / ".join(f"{1000 * v / (repeats * len(decoded)):.2f}" for v in stages.values())
        started = time.perf_counter()
        for i in range(0, len(blobs), batch):
            pipeline.predict(list(pool.map(lambda b: decode(b, "jpeg", limits), blobs[i: i + batch])))
        with_decode = len(blobs) / (time.perf_counter() - started)
        rows.append({"batch": batch, "model_stage": alone, "with_decode": with_decode, "split": split})
    pool.shutdown()
    return rows


def truth(pipeline: Any) -> dict[str, Any]:
    return pipeline.runtime()


def preload_cuda() -> None:
    """Make pip-installed CUDA 13 / cuDNN 9 libraries loadable before the CUDA EP asks for them."""
    with contextlib.suppress(ImportError):
        import torch  # noqa: F401  (its import loads libcudart, libcublas and libcudnn from its wheels)
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()


def main(argv: list[str] | None = None) -> int:
    if "--preload-cuda" in (sys.argv[1:] if argv is None else argv):
        preload_cuda()
    import onnxruntime as ort

    from ml.repository import ModelRepository

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--cpu-batches", default=None, help="batch sizes for the CPU EP rows (default: --batches)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--conv-search", default="HEURISTIC",
                        help="cuDNN convolution algorithm search modes to compare, e.g. HEURISTIC,EXHAUSTIVE")
    parser.add_argument("--model", default="deepfake")
    parser.add_argument("--model-version", default=None)
    add_repository_argument(parser)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--preload-cuda", action="store_true", help="load pip-installed CUDA/cuDNN first")
    args = parser.parse_args(argv)

    repo = ModelRepository(args.repository)
    blobs = face_photos(args.images)
    batches = int_list(args.batches)
    cpu_batches = int_list(args.cpu_batches) if args.cpu_batches else batches
    available = ort.get_available_providers()
    report: dict[str, Any] = {"onnxruntime": ort.__version__, "available": available, "card": card(),
                              "cores": cores()}
    shared = Shared().start()
    rows: list[list[object]] = []
    gpu = {"stage": 0.0, "decode": 0.0}  # best images/s: model stage alone, decode included
    cpu = {"stage": 0.0, "decode": 0.0}
    if CUDA in available:
        from ml import runtime

        for search in args.conv_search.split(","):
            runtime.CUDA_OPTIONS["cudnn_conv_algo_search"] = search.strip()
            pipeline = repo.load(args.model, [CUDA, CPU], threads=1, version=args.model_version)
            report["cuda_truth"] = truth(pipeline)
            on_gpu = report["cuda_truth"]["provider"] == CUDA
            for r in stage_rates(pipeline, blobs, batches, args.repeats):
                rows.append([f"CUDA EP ({report['cuda_truth']['precision']}, conv search {search.strip()})"
                             + ("" if on_gpu else " FELL BACK TO CPU"),
                             r["batch"], r["model_stage"], r["with_decode"], r["split"]])
                if on_gpu:
                    gpu = {"stage": max(gpu["stage"], r["model_stage"]),
                           "decode": max(gpu["decode"], r["with_decode"])}
            del pipeline
    else:
        report["cuda_truth"] = f"no CUDA EP in this onnxruntime (available: {available})"
    pipeline = repo.load(args.model, [CPU], threads=cores(), version=args.model_version)
    report["cpu_truth"] = truth(pipeline)
    for r in stage_rates(pipeline, blobs, cpu_batches, args.repeats):
        rows.append([f"CPU EP ({report['cpu_truth']['precision']}), 1 process x {cores()} threads", r["batch"],
                     r["model_stage"], r["with_decode"], r["split"]])
        cpu = {"stage": max(cpu["stage"], r["model_stage"]), "decode": max(cpu["decode"], r["with_decode"])}
    del pipeline
    if cores() > 1:
        for o in deepfake_offline.measure(args.repository, args.model, args.model_version, blobs, cores(), 1,
                                          [b for b in cpu_batches if b <= 32]):
            rows.append([f"CPU EP, {cores()} processes x 1 thread", o.batch, "-", o.rate, "-"])
            cpu["decode"] = max(cpu["decode"], o.rate)
    shared.stop(own_cpu_seconds())

    print(header(f"GPU check: {args.model} ml stage, {args.images} distinct 512 px one-face JPEGs", shared))
    print(f"card: {report['card']}; onnxruntime {report['onnxruntime']}; available providers: {available}")
    print(f"provider truth, CUDA run: {json.dumps(report['cuda_truth'])}")
    print(f"provider truth, CPU run: {json.dumps(report['cpu_truth'])}")
    print(table(["path", "batch", "images/s (model stage, decoded in advance)", "images/s (decode included)",
                 "ms/image: detect / crop / classify"], rows))
    if gpu["stage"]:
        print(f"GPU best: {gpu['stage']:.0f} images/s model stage, {gpu['decode']:.0f} decode included "
              f"(target >= {TARGET_RATE:.0f})")
        print(f"GPU / best CPU EP of this box: {gpu['stage'] / cpu['stage']:.1f}x model stage, "
              f"{gpu['decode'] / cpu['decode']:.1f}x decode included (target >= {TARGET_RATIO:.0f}x)")
    else:
        print(f"GPU rows: not measured (no CUDA EP here). Best CPU EP on this box: {cpu['stage']:.1f} images/s "
              f"model stage, {cpu['decode']:.1f} decode included")
    report.update(rows=rows, gpu_best=gpu, cpu_best=cpu, provisional=shared.provisional)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
