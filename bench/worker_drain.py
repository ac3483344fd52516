"""The inference workers alone on the real stack: a filled queue drained, vs the offline best of the same
model on the same photos, side by side in one run.

    .venv/bin/python bench/worker_drain.py [--images 480] [--mode embedded|service|both]
        [--processes 2] [--threads 1] [--batches 8]

The stack's inference workers are paused (SIGSTOP) while every photo is submitted (``POST /v1/batches``
of 16), then resumed; the figures run from the resume to the last verdict. So the web is idle while they
are taken (only the collecting long polls are open), and images/s and the workers' CPU per photo show
what the worker itself adds to the model (claim, fetch, decode threads, record, status), apart from the
web's share of the cores that bench/end_to_end.py measures.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import deepfake_offline
from bench.common import Shared, add_stack_arguments, header, int_list, own_cpu_seconds, stack_modes, table
from bench.load import BATCH_ITEMS, collect_batch, post_batch, warm_up
from bench.photos import face_photos
from bench.proc_cpu import snapshot
from bench.stacks import STACKS, Stack


@contextmanager
def paused(pids: list[int]) -> Iterator[None]:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def drain(stack: Stack, photos: list[bytes], timeout: float = 600) -> tuple[float, float, int]:
    """(images/s, worker CPU seconds, failed jobs) from the resume to the last verdict."""
    session = requests.Session()
    workers = list(stack.groups["inference workers"](snapshot()))
    with paused(workers):
        urls = [post_batch(session, stack.url, stack.headers, photos[start:start + BATCH_ITEMS])
                for start in range(0, len(photos), BATCH_ITEMS)]
        before = snapshot()
        started = time.monotonic()
    deadline = started + timeout
    docs = [doc for url in urls for doc in collect_batch(session, stack.url, stack.headers, url, deadline)[0]]
    seconds = time.monotonic() - started
    after = snapshot()
    cpu = sum(after[p].cpu - before[p].cpu for p in workers if p in after and p in before)
    return len(photos) / seconds, cpu, sum(doc["status"] != "succeeded" for doc in docs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=480)
    parser.add_argument("--processes", default="2", help="offline grid: processes")
    parser.add_argument("--threads", default="1", help="offline grid: ONNX Runtime threads")
    parser.add_argument("--batches", default="8", help="offline grid: batch sizes")
    add_stack_arguments(parser, mode="embedded")
    args = parser.parse_args(argv)
    photos = face_photos(args.images, args.seed)
    shared = Shared().start()
    offline = deepfake_offline.grid(args.repository, args.model, None, photos, int_list(args.processes),
                                    int_list(args.threads), int_list(args.batches))
    best = deepfake_offline.best(offline)
    rows: list[list[object]] = [[f"offline best: {best.processes} processes x {best.threads} threads, batch "
                                 f"{best.batch}, decode included", best.rate, 1.0, best.cpu_ms, "-"]]
    failed = 0
    for mode in stack_modes(args.mode):
        with STACKS[mode](args.model, args.repository, None) as stack:
            warm_up(stack.url, stack.headers, face_photos(8, args.seed + 1000))
            rate, cpu, lost = drain(stack, photos)
        failed += lost
        rows.append([f"{mode}: a filled queue drained by {stack.inference_processes} inference processes", rate,
                     rate / best.rate, 1e3 * cpu / len(photos), lost])
    shared.stop(own_cpu_seconds())
    print(header(f"workers draining a filled queue vs offline: {best.model}, {args.images} distinct 512 px "
                 "one-face JPEGs", shared))
    print(table(["path", "images/s", "vs best offline", "CPU ms/image (workers; offline: all)", "failed"], rows))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
