"""Where a job's CPU goes outside the model: py-spy samples the web and worker processes under the road's
load (bench/road.py's near-free model) and the samples are summed by category and by function, in
milliseconds per job.

    .venv/bin/python bench/profile_road.py [--jobs 400] [--mode service|embedded] [--rate 100] [--photos] [--keep DIR]

py-spy (from .venv-bench, bench/peer_venv.py) attaches to gunicorn's master and to the inference
workers with ``--subprocesses --nonblocking`` (it never pauses them) and records on-CPU Python stacks
("raw" collapsed format, kept with --keep for flame graphs). Sampling at 100 Hz gives ±10 ms per
sample: figures per job are averages over hundreds of jobs, read them as proportions.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import peer_venv
from bench.common import ROOT, Shared, add_repository_argument, header, own_cpu_seconds, table
from bench.load import add_polling_argument
from bench.measure import postgres_backend_cpu, run_stack
from bench.photos import face_photos, faceless_images
from bench.proc_cpu import snapshot
from bench.road import one_version_repository
from bench.stacks import Stack

# First match wins, tried from the innermost frame outwards: a frame inside SQLAlchemy called from
# job_queue is "database", not "deepscreen code".
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [(name, re.compile(pattern)) for name, pattern in [
    ("model (onnxruntime run)", r"onnxruntime/"),
    ("image decode / checks (PIL, cv2, av)",
     r"PIL/|/cv2/|/av/|ml/image_decode|ml/video_decode|core/media_types|filetype/"),
    ("database (SQLAlchemy, psycopg, sqlite)", r"sqlalchemy/|psycopg|sqlite3/|alembic/"),
    ("Redis client", r"/redis/"),
    ("object store (boto3/botocore/urllib3)", r"botocore/|boto3/|s3transfer/|urllib3/"),
    ("broker (Celery, kombu)", r"celery/|kombu/|billiard/|vine/"),
    ("auth + rate limit (jwt, limiter, limits)", r"/jwt/|flask_limiter/|/limits/|web/auth|core/tokens"),
    ("HTTP framework (Flask, werkzeug, gunicorn)", r"flask/|werkzeug/|gunicorn/|flask_cors/"),
    ("metrics + logging (prometheus, logging)", r"prometheus_client/|/logging/|core/logs|log_redaction"),
    ("JSON + pydantic + settings", r"/json/|pydantic|core/settings"),
    ("threads / queues / waiting", r"threading\.py|concurrent/|queue\.py|selectors\.py|socket\.py|ssl\.py"),
    ("hashing (hashlib)", r"hashlib"),
    ("deepscreen code (web/, core/, workers/, ml/)", r"[(/](web|core|workers|ml|cli)/[a-z_/0-9]+\.py"),
]]
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
PROJECT = re.compile(r"^(" + re.escape(str(ROOT)) + r"/)?(web|core|workers|ml|cli)/[a-z_/0-9]+\.py$")


def categorise(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return "other (stdlib, interpreter)"


def parse_raw(path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(process cmdline, frames outermost first, samples) per line of py-spy's raw output."""
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        parts = stack.split(";")
        process = parts[0] if parts and parts[0].startswith("process ") else ""
        frames = [p for p in parts if not p.startswith(("process ", "thread "))]
        yield process, frames, int(count)


def group_of(process: str) -> str:
    if "gunicorn" in process:
        return "web"
    return "workers"


@contextmanager
def spy(stack: Stack, folder: Path, rate: int) -> Iterator[None]:
    """py-spy on the web's and the inference workers' process trees for the duration of the block."""
    py_spy = peer_venv.tool("py-spy")
    snap = snapshot()

    def roots(group: str) -> list[int]:  # the top processes of a group (py-spy follows their children)
        pids = set(stack.groups[group](snap))
        return sorted(p for p in pids if snap[p].ppid not in pids)

    targets = [(f"web-{pid}", pid) for pid in roots("web (gunicorn)")]
    targets += [(f"workers-{pid}", pid) for pid in roots("inference workers")]
    procs = []
    for name, pid in targets:
        out = folder / f"{name}.txt"
        procs.append(subprocess.Popen([str(py_spy), "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
                                       "--gil", "--rate", str(rate), "--format", "raw", "--output", str(out)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)  # attached before the load starts
    try:
        yield
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _project_functions(frames: list[str]) -> list[str]:
    """The distinct project functions on a stack (each counted once: inclusive time)."""
    out: list[str] = []
    for frame in frames:
        match = FRAME.match(frame)
        if match and PROJECT.search(match["file"]):
            name = f"{_short(match['file'])}:{match['func']}"
            if name not in out:
                out.append(name)
    return out


Category = tuple[str, str, float, float]  # process, category, sampled ms/job, share %
Function = tuple[str, str, float]  # process, function, sampled ms/job


def summarise(folder: Path, rate: int, jobs: int) -> tuple[list[Category], list[Function], list[Function]]:
    by_category: Counter[tuple[str, str]] = Counter()
    by_function: Counter[tuple[str, str]] = Counter()
    inclusive: Counter[tuple[str, str]] = Counter()
    for path in sorted(folder.glob("*.txt")):
        for process, frames, count in parse_raw(path):
            group = "web" if path.name.startswith("web") else group_of(process)
            by_category[(group, categorise(frames))] += count
            for name in _project_functions(frames):
                inclusive[(group, name)] += count
            if frames:
                match = FRAME.match(frames[-1])
                leaf = frames[-1] if match is None else f"{match['func']} ({_short(match['file'])})"
                by_function[(group, leaf)] += count
    ms = 1e3 / rate / jobs
    totals = Counter[str]()
    for (group, _), count in by_category.items():
        totals[group] += count
    categories = [(group, name, count * ms, 100 * count / totals[group])
                  for (group, name), count in sorted(by_category.items(), key=lambda kv: (kv[0][0], -kv[1]))]
    functions = [(group, leaf, count * ms) for (group, leaf), count in by_function.most_common(25)]
    ours = [(group, name, count * ms) for (group, name), count in
            sorted(inclusive.items(), key=lambda kv: (kv[0][0], -kv[1])) if count * ms >= 0.1]
    return categories, functions, ours


def _short(path: str) -> str:
    for marker in ("site-packages/", "python3.11/", str(ROOT) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--mode", choices=["embedded", "service"], default="service")
    parser.add_argument("--model", default="deepfake")
    parser.add_argument("--model-version", default=None, help="serve only this version (as bench/road.py)")
    parser.add_argument("--concurrency", type=int, default=8)
    add_polling_argument(parser)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--photos", action="store_true",
                        help="distinct 512 px one-face photos (bench/end_to_end.py's load) instead of face-less 64x64")
    parser.add_argument("--keep", type=Path, help="keep py-spy's raw stacks in this folder")
    add_repository_argument(parser)
    args = parser.parse_args(argv)

    folder = args.keep or Path(tempfile.mkdtemp(prefix="ds-bench-profile-"))
    folder.mkdir(parents=True, exist_ok=True)
    if args.photos:
        blobs, warm, what = face_photos(args.jobs, 0), face_photos(16, 1000), "512 px one-face photos"
    else:
        blobs, warm, what = faceless_images(args.jobs, 64, 0), faceless_images(16, 64, 1000), "face-less 64x64 JPEGs"
    scratch = tempfile.TemporaryDirectory(prefix="ds-bench-repo-")
    if args.model_version:
        args.repository = one_version_repository(args.repository, args.model, args.model_version, Path(scratch.name))
    shared = Shared().start()
    run = run_stack(args.mode, args.model, args.repository, blobs, warm, args.concurrency, max_poll_interval=0.5,
                    polling=args.polling,
                    during=lambda stack: spy(stack, folder, args.rate))
    shared.stop(own_cpu_seconds() + postgres_backend_cpu(run))
    categories, functions, ours = summarise(folder, args.rate, args.jobs)
    measured = {"web": 1e3 * run.cpu["web (gunicorn)"] / run.load.jobs,
                "workers": 1e3 * run.cpu["inference workers"] / run.load.jobs}
    sampled = {g: sum(row[2] for row in categories if row[0] == g) for g in measured}
    scale = {g: measured[g] / sampled[g] if sampled[g] else 0.0 for g in measured}
    print(header(f"profile of the road ({args.mode}): {args.model} on {args.jobs} {what}, "
                 f"{args.concurrency} clients ({args.polling} polls), py-spy {args.rate} Hz, non-blocking", shared))
    print(f"{run.load.rate:.1f} jobs/s under the profiler; measured CPU ms/job: "
          + ", ".join(f"{k} {1e3 * v / run.load.jobs:.1f}" for k, v in run.cpu.items()))
    print("\npy-spy's GIL-holding samples overcount a 64-thread gunicorn worker; the shares are what to read. "
          "'ms/job' below = share x the CPU ms/job measured from /proc: "
          + ", ".join(f"{g}: {sampled[g]:.1f} ms/job sampled vs {measured[g]:.1f} measured" for g in measured))
    print("\non-CPU time by category (innermost matching frame):")
    print(table(["process", "category", "share %", "ms/job"],
                [[g, name, share, ms * scale[g]] for g, name, ms, share in categories]))
    print("\nproject functions, inclusive (everything they call):")
    print(table(["process", "function", "ms/job"], [[g, f, ms * scale[g]] for g, f, ms in ours]))
    print("\nhottest leaf functions:")
    print(table(["process", "function (file)", "ms/job"], [[g, f, ms * scale[g]] for g, f, ms in functions]))
    print(f"\nraw stacks: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
