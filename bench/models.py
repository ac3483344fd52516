"""Benchmark every model in a built repository on this machine's CPU (or the providers given).

For each model: end-to-end ``predict`` latency at batch 1, throughput at batch 1, 2, 4, 8, 16 (the best
is reported), per-stage latency when the pipeline reports it (a ``last_timings`` dict of stage →
seconds filled by ``predict``), and for models that ship an INT8 variant the INT8 / FP32 latency ratio
(the same pipeline built once with and once without the ``*.int8`` files).

    python -m bench.models [--repository model_repository] [--threads 2] [--repeats 5] [--json out.json]

Inputs are generated in-process (skimage's astronaut photo, which has a real face, plus smooth
colour fields), so numbers measure speed only, never accuracy.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ml.manifest import Manifest
from ml.pipelines import pipeline_class
from ml.repository import ModelRepository
from ml.types import MediaItem

BATCHES = (1, 2, 4, 8, 16)


def sample_items(count: int) -> list[MediaItem]:
    from ml.build.optimize.feeds import generated_frames

    frames: list[np.ndarray] = []
    try:
        from skimage import data

        frames.append(np.ascontiguousarray(data.astronaut()))
    except ImportError:
        pass
    frames += generated_frames(max(count - len(frames), 0), size=384)
    texts = ["when the code works on the first try", "have a nice day everyone"]
    return [MediaItem(kind="image", frames=[frames[i % len(frames)]], text=texts[i % 2],
                      source_format="png") for i in range(count)]


def _time_predict(pipeline: Any, items: list[MediaItem], repeats: int) -> tuple[float, dict[str, float]]:
    """Median seconds per ``predict`` call, and median per-stage seconds when the pipeline reports them."""
    pipeline.predict(items)  # warm-up: first-call allocations and lazy initialisation
    totals: list[float] = []
    stages: dict[str, list[float]] = {}
    for _ in range(repeats):
        start = time.perf_counter()
        pipeline.predict(items)
        totals.append(time.perf_counter() - start)
        for stage, seconds in (getattr(pipeline, "last_timings", None) or {}).items():
            stages.setdefault(stage, []).append(float(seconds))
    return statistics.median(totals), {k: statistics.median(v) for k, v in stages.items()}


def _without_int8(manifest: Manifest) -> Manifest:
    fp32 = copy.copy(manifest)
    fp32.files = {role: entry for role, entry in manifest.files.items() if not role.endswith(".int8")}
    return fp32


def bench_model(manifest: Manifest, providers: list[str], threads: int, repeats: int) -> dict[str, Any]:
    manifest.verify()
    cls = pipeline_class(manifest.pipeline)
    pipeline = cls(manifest, providers, threads)
    has_int8 = any(role.endswith(".int8") for role in manifest.files)
    default = "int8" if has_int8 and providers[:1] == ["CPUExecutionProvider"] else "fp32"
    row: dict[str, Any] = {"model": f"{manifest.name}/{manifest.version}",
                           "precision": getattr(pipeline, "precision", default)}
    items = sample_items(max(BATCHES))
    latency, stages = _time_predict(pipeline, items[:1], repeats)
    row["batch1_ms"] = latency * 1e3
    row["stages_ms"] = {k: v * 1e3 for k, v in stages.items()}
    throughput = {}
    for batch in BATCHES:
        seconds, _ = _time_predict(pipeline, items[:batch], max(2, repeats // 2))
        throughput[batch] = batch / seconds
    best = max(throughput, key=lambda b: throughput[b])
    row["throughput"] = throughput
    row["batch1_per_s"], row["best_batch"], row["best_per_s"] = throughput[1], best, throughput[best]
    if has_int8:
        fp32 = cls(_without_int8(manifest), providers, threads)
        fp32_latency, _ = _time_predict(fp32, items[:1], repeats)
        row["fp32_batch1_ms"] = fp32_latency * 1e3
        row["int8_over_fp32"] = latency / fp32_latency
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (f"{'model':<16} {'prec':<5} {'b1 ms':>8} {'b1 /s':>7} {'best b':>6} {'best /s':>8} "
              f"{'int8/fp32':>9}  stages (ms, batch 1)")
    lines = [header, "-" * len(header)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['model']:<16} error: {r['error']}")
            continue
        ratio = f"{r['int8_over_fp32']:.2f}" if "int8_over_fp32" in r else "-"
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages_ms"].items()) or "-"
        lines.append(f"{r['model']:<16} {r['precision']:<5} {r['batch1_ms']:>8.1f} {r['batch1_per_s']:>7.1f} "
                     f"{r['best_batch']:>6} {r['best_per_s']:>8.1f} {ratio:>9}  {stages}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path,
                        default=Path(os.environ.get("MODEL_REPOSITORY", "model_repository")))
    parser.add_argument("--models", nargs="*", help="Only these model names.")
    parser.add_argument("--providers", default="CPUExecutionProvider")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ORT intra-op threads.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="Also write the rows here.")
    args = parser.parse_args(argv)

    repo = ModelRepository(args.repository)
    names = args.models or repo.names()
    if not names:
        print(f"no models in {args.repository}: build them first", file=sys.stderr)
        return 1
    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    rows = []
    for name in names:
        try:
            rows.append(bench_model(repo.manifest(name), providers, args.threads, args.repeats))
        except Exception as exc:  # one broken model must not hide the others' numbers
            rows.append({"model": name, "error": f"{type(exc).__name__}: {exc}"})
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, threads={args.threads}, "
          f"providers={providers}, repeats={args.repeats}")
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return 0 if all("error" not in r for r in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
