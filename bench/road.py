"""Road capacity: how many jobs/s the stack carries when the model costs almost nothing, how fast
POST /v1/jobs answers, and how much CPU each job costs outside the model.

The near-free model: ``deepfake`` on distinct 64x64 noise JPEGs (no face, so MTCNN/BlazeFace run on a
tiny image and no classifier runs; the label is ``no_face``). Its offline CPU cost per image (decode +
predict, one 1-thread process, at batch 1 and at BATCH_MAX) is measured in the same run.

CPU per job: CPU time (utime+stime from /proc/<pid>/stat, sampled during the run) of every project
process — gunicorn master and workers, the Celery inference processes, control + beat — plus the
PostgreSQL backends of the bench's database and the bench's own redis-server, divided by jobs, minus
the model's own offline CPU per job (the BATCH_MAX figure, the smaller: what is left is not flattered).
Not counted: the load generator, the S3 server, PostgreSQL's shared helper processes (all reported).

    .venv/bin/python bench/road.py [--jobs 600] [--concurrency 8] [--mode service|embedded|both]

Targets (issue 7): ≥ 100 jobs/s; POST p50 ≤ 20 ms at 8 concurrent clients; ≤ 5 CPU ms per job
outside the model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import deepfake_offline
from bench.common import Shared, add_stack_arguments, header, own_cpu_seconds, stack_modes, table
from bench.load import add_polling_argument
from bench.measure import StackRun, postgres_backend_cpu, run_stack
from bench.photos import faceless_images

TARGET_RATE, TARGET_P50_MS, TARGET_CPU_MS = 100.0, 20.0, 5.0


def model_cpu_ms(repo: Path, model: str, blobs: list[bytes], batch_max: int) -> dict[int, float]:
    rows = deepfake_offline.measure(repo, model, None, blobs, processes=1, threads=1, batches=[1, batch_max])
    return {r.batch: r.cpu_ms for r in rows}


def one_version_repository(repo: Path, model: str, version: str, into: Path) -> Path:
    """A repository holding only ``model/version`` (a link): in the stack's fresh database the first
    version registered goes live, so this pins the road's model without touching the real repository."""
    source = repo / model / version
    if not source.is_dir():
        raise SystemExit(f"no {model}/{version} in {repo}")
    (into / model).mkdir(parents=True)
    (into / model / version).symlink_to(source.resolve(), target_is_directory=True)
    return into


def breakdown(run: StackRun) -> list[list[object]]:
    jobs = run.load.jobs
    rows: list[list[object]] = [[f"{run.mode}: {name}", 1e3 * cpu / jobs, "yes"] for name, cpu in run.cpu.items()]
    rows += [[f"{run.mode}: {name}", 1e3 * cpu / jobs, "no"] for name, cpu in run.other_cpu.items()]
    rows.append([f"{run.mode}: load generator (8 client threads, this process)", 1e3 * run.load_generator_cpu / jobs,
                 "no"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--model-version", default=None,
                        help="serve this version (default: the newest, as a fresh install does); deepfake 1's "
                             "MTCNN is the near-free one on face-less images, 2's BlazeFace costs ~10 ms")
    parser.add_argument("--size", type=int, default=64, help="side of the face-less noise images")
    parser.add_argument("--concurrency", type=int, default=8)
    add_polling_argument(parser)
    parser.add_argument("--batch-max", type=int, default=int(os.environ.get("BATCH_MAX", "8")))
    add_stack_arguments(parser, mode="service")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    blobs = faceless_images(args.jobs, args.size, args.seed)
    warm = faceless_images(16, args.size, args.seed + 1000)
    scratch = tempfile.TemporaryDirectory(prefix="road-repo-")
    if args.model_version:
        args.repository = one_version_repository(args.repository, args.model, args.model_version, Path(scratch.name))
    shared = Shared().start()
    model_ms = model_cpu_ms(args.repository, args.model, blobs[: min(len(blobs), 200)], args.batch_max)
    modes = stack_modes(args.mode)
    runs = [run_stack(mode, args.model, args.repository, blobs, warm, args.concurrency, max_poll_interval=0.5,
                      polling=args.polling)
            for mode in modes]
    shared.stop(own_cpu_seconds() + sum(postgres_backend_cpu(r) for r in runs))

    model_cost = model_ms[args.batch_max]
    served = f"{args.model}/{args.model_version}" if args.model_version else f"{args.model} (newest version)"
    print(header(f"road capacity: {served} on {args.jobs} distinct {args.size}x{args.size} face-less JPEGs "
                 f"(model offline CPU: {model_ms[1]:.2f} ms/image at batch 1, {model_cost:.2f} at batch "
                 f"{args.batch_max}), {args.concurrency} concurrent clients ({args.polling} polls)", shared))
    rows = []
    for r in runs:
        total = r.cpu_ms_per_job()
        rows.append([r.mode, r.load.rate, r.load.post_percentile(50), r.load.post_percentile(95), total, model_cost,
                     total - model_cost, r.load.mean_batch, r.load.polls / r.load.jobs, r.idle_cores])
    print(table(["mode", "jobs/s", "POST p50 ms", "POST p95 ms", "project CPU ms/job", "model CPU ms/job (offline)",
                 "outside the model ms/job", "mean batch", "polls/job", "idle project CPU (cores)"], rows))
    print(f"targets: >= {TARGET_RATE:.0f} jobs/s; POST p50 <= {TARGET_P50_MS:.0f} ms; outside the model <= "
          f"{TARGET_CPU_MS:.0f} ms/job (counted: web, workers, control + beat, PostgreSQL backends of this database, "
          "Redis)")
    print("\nCPU per job by process group:")
    print(table(["group", "CPU ms/job", "counted"], [row for r in runs for row in breakdown(r)]))
    for r in runs:
        if r.calls_per_job:
            print(f"\ncalls per job ({r.mode}; counted by the servers, the load generator's polls included):")
            print(table(["server: call", "per job"], [[k, v] for k, v in r.calls_per_job.items()]))
    for r in runs:
        if r.load.failed:
            print(f"{r.mode}: {len(r.load.failed)} jobs failed, e.g. {r.load.failed[:3]}")
    if args.json:
        args.json.write_text(json.dumps({
            "provisional": shared.provisional, "model_cpu_ms": model_ms,
            "runs": {r.mode: {"jobs_per_s": r.load.rate, "post_p50_ms": r.load.post_percentile(50),
                              "post_p95_ms": r.load.post_percentile(95), "cpu_ms_per_job": r.cpu_ms_per_job(),
                              "groups_ms_per_job": {k: 1e3 * v / r.load.jobs for k, v in r.cpu.items()}}
                     for r in runs}}, indent=2) + "\n")
    return 0 if all(not r.load.failed for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
