"""How long a client waits for one verdict, and where the time goes: clients that each send
``POST /v1/jobs?wait=30`` one photo after another (submit and wait in one request, as the browser
extension and ``Client.submit_file(..., wait=30)`` do), on each stack.

Each answer's job document carries ``created_at`` (the row is written), ``started_at`` (a worker
claimed it) and ``finished_at`` (its results are committed); with the client's own clock around the
request, a verdict's time splits into: POST → row, row → claimed (the broker's delivery), claimed →
finished (fetch, decode, the batch's model calls, the record), finished → answer (the waiter woken,
the document read, the answer sent). Server and client share this machine's clock.

    .venv/bin/python bench/verdict_latency.py [--images 160] [--clients 1,8] [--mode embedded|service|both]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import stacks
from bench.common import (
    Shared,
    add_stack_arguments,
    header,
    in_client_threads,
    int_list,
    own_cpu_seconds,
    stack_modes,
    table,
)
from bench.photos import face_photos

STAGES = ["POST -> row", "row -> claimed", "claimed -> finished", "finished -> answer", "whole verdict"]


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def measure(stack: stacks.Stack, blobs: list[bytes], clients: int) -> tuple[float, list[list[float]], list[int]]:
    """(verdicts/s, per stage the milliseconds of every verdict, batch sizes) for ``clients`` clients."""
    rows: list[list[float]] = []
    batches: list[int] = []
    lock = threading.Lock()

    def client(share: list[bytes]) -> None:
        session = requests.Session()
        for blob in share:
            sent = time.time()
            response = session.post(f"{stack.url}/v1/jobs", headers=stack.headers, params={"wait": 30},
                                    files={"file": ("photo.jpg", blob)}, timeout=90)
            answered = time.time()
            doc = response.json()
            if response.status_code != 200 or doc.get("status") != "succeeded":
                raise RuntimeError(f"POST ?wait=30 answered {response.status_code}: {str(doc)[:300]}")
            created, started, finished = (_stamp(doc[k]) for k in ("created_at", "started_at", "finished_at"))
            with lock:
                rows.append([created - sent, started - created, finished - started, answered - finished,
                             answered - sent])
                batches.extend([r["evidence"]["runtime"]["batch_size"] for r in doc["results"].values()][:1])

    began = time.monotonic()
    in_client_threads(client, blobs, clients)
    elapsed = time.monotonic() - began
    return len(blobs) / elapsed, [[1e3 * row[i] for row in rows] for i in range(len(STAGES))], batches


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=160, help="photos per client count (each distinct)")
    parser.add_argument("--clients", default="1,8", help="comma list of concurrent clients")
    add_stack_arguments(parser)
    args = parser.parse_args(argv)

    counts = int_list(args.clients)
    photos = face_photos(args.images * len(counts) + 8, seed=args.seed)
    warm, photos = photos[:8], photos[8:]
    shared = Shared().start()
    results = []
    for mode in stack_modes(args.mode):
        with getattr(stacks, mode)(args.model, args.repository) as stack:
            measure(stack, warm, min(4, len(warm)))  # first-request work in every process
            for n, clients in enumerate(counts):
                share = photos[n * args.images:(n + 1) * args.images]
                results.append((mode, clients, *measure(stack, share, clients)))
    shared.stop(own_cpu_seconds())

    print(header(f"verdict latency: {args.model} on distinct 512 px one-face photos, clients sending "
                 "POST /v1/jobs?wait=30 one after another", shared))
    rows = []
    for mode, clients, rate, stages, batches in results:
        rows.append([mode, clients, rate, *(f"{percentile(v, 50):.1f} / {percentile(v, 90):.1f}" for v in stages),
                     sum(batches) / len(batches) if batches else float("nan")])
    print(table(["mode", "clients", "verdicts/s", *(f"{s} ms p50 / p90" for s in STAGES), "mean batch"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
