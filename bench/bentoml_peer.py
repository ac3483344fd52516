"""deepscreen end to end vs BentoML serving the same ``ml/`` pipeline, side by side in one run.

The peer (bench/bentoml_service.py): BentoML 1.4.40 with adaptive batching (up to 32), 2 worker
processes, 1 ONNX Runtime thread each, no auth, no storage, no database; it answers each request with
the verdict. deepscreen: the real stack (embedded and/or service, bench/stacks.py) with auth, storage,
database, queue. Both see the same distinct 512 px one-face photos from the same number of concurrent
clients, each sending its share as fast as the server lets it: a BentoML client waits for each verdict
(that is its API); a deepscreen client posts and polls (that is its API). With ``--polling batch`` the
clients of both are bulk clients: 16 images a request (a list to BentoML's batchable API, a
``POST /v1/batches`` to deepscreen, collected whole). images/s = photos / (first
request -> last verdict). Target (issue 7): deepscreen ≥ 1.2 x BentoML.

BentoML lives in .venv-bench (made here if missing: bench/peer_venv.py), never in the project's venv.

    .venv/bin/python bench/bentoml_peer.py [--images 120] [--concurrency 8] [--mode embedded|service|both]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import peer_venv
from bench.common import (
    ROOT,
    Shared,
    add_stack_arguments,
    header,
    in_client_threads,
    own_cpu_seconds,
    stack_modes,
    table,
)
from bench.load import BATCH_ITEMS, add_polling_argument
from bench.measure import postgres_backend_cpu, run_stack
from bench.photos import face_photos
from bench.proc_cpu import CpuSampler, tree
from bench.stacks import free_port

TARGET = 1.2


@dataclass
class PeerRun:
    rate: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)

    def p50(self) -> float:
        values = sorted(self.latency_ms)
        return values[len(values) // 2] if values else float("nan")


@contextmanager
def bentoml_server(model: str, repo: Path, workers: int = 2, batch_max: int = 32) -> Iterator[tuple[str, int]]:
    """(url, pid) of a running peer; stopped on exit."""
    bentoml = peer_venv.tool("bentoml")
    port = free_port()
    home = Path(tempfile.mkdtemp(prefix="ds-bench-bentoml-"))
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True", "MODEL_REPOSITORY": str(repo),
           "BENCH_MODEL": model, "BENCH_BENTO_WORKERS": str(workers), "BENCH_BATCH_MAX": str(batch_max),
           "ONNX_INTRA_OP_THREADS": "1"}
    log = home / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(bentoml), "serve", "bench.bentoml_service:DeepfakePeer", "--host", "127.0.0.1",
                                 "--port", str(port), "--working-dir", str(ROOT)], env=env, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bentoml serve did not come up:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        yield url, proc.pid
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)


def drive_peer(url: str, blobs: list[bytes], clients: int, per_request: int = 1) -> PeerRun:
    """Each client sends its share ``per_request`` images a request (a bulk client sends a list, as
    BentoML's batchable API takes one) and waits for their verdicts before the next request."""
    run = PeerRun()
    lock = threading.Lock()
    starts: list[float] = []
    ends: list[float] = []

    def client(share: list[bytes]) -> None:
        session = requests.Session()
        for start in range(0, len(share), per_request):
            chunk = share[start:start + per_request]
            started = time.time()
            files = [("images", ("x.jpg", blob, "image/jpeg")) for blob in chunk]
            response = session.post(f"{url}/screen", files=files, timeout=300)
            response.raise_for_status()
            answers = response.json()
            ended = time.time()
            if len(answers) != len(chunk):
                raise RuntimeError(f"{len(chunk)} images sent, {len(answers)} verdicts back")
            with lock:
                starts.append(started)
                ends.append(ended)
                run.latency_ms.append(1e3 * (ended - started))
                for answer in answers:
                    run.batch_sizes.append(int(answer["batch_size"]))
                    run.labels[answer["label"]] = run.labels.get(answer["label"], 0) + 1

    in_client_threads(client, blobs, clients)
    run.rate = len(blobs) / (max(ends) - min(starts))
    return run


def measure_peer(model: str, repo: Path, blobs: list[bytes], warm: list[bytes], clients: int,
                 per_request: int = 1) -> PeerRun:
    with bentoml_server(model, repo) as (url, pid):
        drive_peer(url, warm, min(clients, len(warm)))
        with CpuSampler({"bentoml": lambda snap: tree(snap, [pid])}) as sampler:
            run = drive_peer(url, blobs, clients, per_request)
        run.cpu_seconds = sampler.seconds["bentoml"]
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--concurrency", type=int, default=8)
    add_polling_argument(parser)
    add_stack_arguments(parser)
    args = parser.parse_args(argv)

    photos = face_photos(args.images, args.seed)
    warm = face_photos(8, args.seed + 1000)
    shared = Shared().start()
    per_request = BATCH_ITEMS if args.polling == "batch" else 1  # bulk clients of both send lists
    peer = measure_peer(args.model, args.repository, photos, warm, args.concurrency, per_request)
    modes = stack_modes(args.mode)
    runs = [run_stack(mode, args.model, args.repository, photos, warm, args.concurrency,
                      polling=args.polling) for mode in modes]
    shared.stop(own_cpu_seconds() + sum(postgres_backend_cpu(r) for r in runs))

    print(header(f"deepscreen vs BentoML 1.4.40 (same ml/ pipeline, {args.model}): {args.images} distinct 512 px "
                 f"one-face JPEGs, {args.concurrency} concurrent clients ({args.polling} polls)", shared))
    rows: list[list[object]] = [[
        f"BentoML: adaptive batching (<= 32), 2 workers x 1 thread, {per_request} image(s) per request; "
        "no auth, storage or database",
        peer.rate, 1.0, peer.p50(), 1e3 * peer.cpu_seconds / len(photos),
        sum(peer.batch_sizes) / len(peer.batch_sizes)]]
    for r in runs:
        rows.append([f"deepscreen {r.mode}: {r.inference_processes} inference processes, auth + storage + database",
                     r.load.rate, r.load.rate / peer.rate, r.load.post_percentile(50),
                     r.cpu_ms_per_job(), r.load.mean_batch])
    print(table(["server", "images/s", "vs BentoML", "request p50 ms", "server CPU ms/image", "mean batch"], rows))
    print("request p50: BentoML's request returns the verdict; deepscreen's POST returns 202 (the verdict is polled). "
          "server CPU: every server process (deepscreen: web, workers, beat, its PostgreSQL backends and Redis; "
          "not the S3 server), divided by images.")
    for r in runs:
        print(f"deepscreen {r.mode} / BentoML = {r.load.rate / peer.rate:.2f} (target >= {TARGET}); "
              f"verdicts {r.load.labels}, failed {len(r.load.failed)}")
    print(f"BentoML verdicts {peer.labels}")
    return 0 if all(not r.load.failed for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
