"""N concurrent clients that submit images and poll for their verdicts, as API users do.

Each client thread works through its share of the images and collects the verdicts in one of three
ways (``polling``):

- ``wait`` (the default): it posts its images back to back (``POST /v1/jobs``), then, as the shipped
  client's ``wait`` does for each job, collects one job at a time in submission order, each with
  ``GET /status/<id>?wait=30`` (a long poll: answered when the job is final), asked again while the
  answer is not final.
- ``submit``: one request per image, as the shipped client's ``submit_file(..., wait=30)``:
  ``POST /v1/jobs?wait=30`` holds the answer until the verdict is in, so each client has one job in
  flight (as a BentoML client does); POST times then include the wait.
- ``batch``: a bulk client: it posts its images ``batch_items`` at a time (``POST /v1/batches``), then
  collects each batch whole with ``GET /v1/batches/<id>?wait=30&include=jobs`` (every job's document
  in one answer once all are final), as the shipped client's ``submit_batch`` + ``wait_batch`` do;
  POST times are per batch request.
- ``interval``: a client that never long-polls: it polls its outstanding jobs (``GET /status/<id>``)
  between posts and after the last one, first ``poll_interval`` seconds after the POST, then at
  doubling intervals up to ``max_poll_interval``.

Throughput is measured on the server's clock: images / (the last job's ``finished_at`` - the first
POST's start), so how the verdicts are collected costs requests (CPU), not precision.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests

from bench.common import in_client_threads


@dataclass
class LoadResult:
    jobs: int = 0
    seconds: float = 0.0
    post_ms: list[float] = field(default_factory=list)
    polls: int = 0
    failed: list[str] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    batch_sizes: list[int] = field(default_factory=list)  # evidence.runtime.batch_size of each result

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0

    def post_percentile(self, q: float) -> float:
        if not self.post_ms:
            return float("nan")
        values = sorted(self.post_ms)
        return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]

    @property
    def mean_batch(self) -> float:
        return statistics.fmean(self.batch_sizes) if self.batch_sizes else float("nan")


def _finished(doc: dict) -> float:
    moment = datetime.fromisoformat(doc["finished_at"].replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


POLLING = ("wait", "submit", "batch", "interval")
BATCH_ITEMS = 16  # images per POST /v1/batches in the ``batch`` mode
LONG_POLL_SECONDS = 30


def add_polling_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--polling", choices=POLLING, default="wait",
                        help="how clients collect verdicts: a long poll per job as the shipped client's wait "
                             "(wait), submit-and-wait in one request (submit), POST /v1/batches of "
                             f"{BATCH_ITEMS} collected whole (batch) or short polls at doubling intervals "
                             "(interval); bench/load.py")


def run(base: str, headers: dict[str, str], blobs: list[bytes], clients: int = 8, poll_interval: float = 0.25,
        timeout: float = 600, models: str | None = None, max_poll_interval: float = 2.0,
        polling: str = "wait") -> LoadResult:
    if polling not in POLLING:
        raise ValueError(f"polling must be one of {POLLING}")
    result = LoadResult(jobs=len(blobs))
    lock = threading.Lock()
    first_post: list[float] = []
    finished: list[float] = []
    deadline = time.monotonic() + timeout

    def record(doc: dict) -> None:
        with lock:
            finished.append(_finished(doc))
            if doc["status"] != "succeeded":
                result.failed.append(f"{doc['id']}: {doc.get('error')}")
                return
            for verdict in (doc.get("results") or {}).values():
                result.labels[verdict["label"]] = result.labels.get(verdict["label"], 0) + 1
                size = ((verdict.get("evidence") or {}).get("runtime") or {}).get("batch_size")
                if size:
                    result.batch_sizes.append(int(size))

    def client(share: list[bytes]) -> None:
        session = requests.Session()
        pending: dict[str, float] = {}  # status url -> when to poll next
        waits: dict[str, float] = {}  # status url -> the interval before the next poll
        polls = 0

        def poll_due(now: float) -> None:
            nonlocal polls
            for url, due in list(pending.items()):
                if due > now:
                    continue
                polls += 1
                doc = session.get(base + url, headers=headers, timeout=60).json()
                if doc.get("status") in ("succeeded", "failed"):
                    record(doc)
                    del pending[url]
                else:
                    waits[url] = min(max_poll_interval, waits.get(url, poll_interval) * 2)
                    pending[url] = time.monotonic() + waits[url]

        def long_poll(url: str) -> None:
            nonlocal polls
            while time.monotonic() < deadline:
                polls += 1
                doc = session.get(base + url, headers=headers, params={"wait": LONG_POLL_SECONDS},
                                  timeout=LONG_POLL_SECONDS + 30).json()
                if doc.get("status") in ("succeeded", "failed"):
                    record(doc)
                    del pending[url]
                    return

        if polling == "batch":
            bulk(share)
            return
        for blob in share:
            form = {"models": models} if models else None
            started = time.time()
            held = {"wait": LONG_POLL_SECONDS} if polling == "submit" else None
            response = session.post(f"{base}/v1/jobs", headers=headers, files={"file": ("x.jpg", blob)},
                                    data=form, params=held, timeout=60 + LONG_POLL_SECONDS)
            elapsed = time.time() - started
            with lock:
                first_post.append(started)
                result.post_ms.append(1e3 * elapsed)
            if response.status_code == 200:  # final: already screened, or screened within ?wait=
                record(response.json())
                continue
            if response.status_code != 202:
                raise RuntimeError(f"POST /v1/jobs answered {response.status_code}: {response.text[:300]}")
            url = response.json()["status_url"]
            pending[url] = time.monotonic() + poll_interval
            if polling == "interval":
                poll_due(time.monotonic())
            elif polling == "submit":  # not final within the wait: long-poll it before the next image
                long_poll(url)
        for url in list(pending) if polling == "wait" else []:
            long_poll(url)
        while pending and time.monotonic() < deadline:
            poll_due(time.monotonic())
            if pending:
                time.sleep(max(0.0, min(pending.values()) - time.monotonic()))
        with lock:
            result.polls += polls
        if pending:
            raise RuntimeError(f"{len(pending)} jobs did not finish within {timeout:.0f} s")

    def bulk(share: list[bytes]) -> None:
        session = requests.Session()
        urls, polls = [], 0
        for start in range(0, len(share), BATCH_ITEMS):
            started = time.time()
            urls.append(post_batch(session, base, headers, share[start:start + BATCH_ITEMS], models))
            with lock:
                first_post.append(started)
                result.post_ms.append(1e3 * (time.time() - started))
        for url in urls:
            docs, asked = collect_batch(session, base, headers, url, deadline)
            polls += asked
            for doc in docs:
                record(doc)
        with lock:
            result.polls += polls

    in_client_threads(client, blobs, clients)
    result.seconds = max(finished) - min(first_post)
    return result


def post_batch(session: requests.Session, base: str, headers: dict[str, str], blobs: list[bytes],
               models: str | None = None) -> str:
    """``POST /v1/batches`` of these images; its status URL."""
    files = [("file", (f"{n}.jpg", blob)) for n, blob in enumerate(blobs)]
    response = session.post(f"{base}/v1/batches", headers=headers, files=files,
                            data={"models": models} if models else None, timeout=120)
    if response.status_code != 202:
        raise RuntimeError(f"POST /v1/batches answered {response.status_code}: {response.text[:300]}")
    return str(response.json()["status_url"])


def collect_batch(session: requests.Session, base: str, headers: dict[str, str], url: str,
                  deadline: float) -> tuple[list[dict], int]:
    """A batch's job documents once every job is final (long polls with ``include=jobs``), and how
    many polls that took. ``deadline`` is on ``time.monotonic()``."""
    polls = 0
    while True:
        if time.monotonic() > deadline:
            raise RuntimeError(f"batch {url} did not finish in time")
        polls += 1
        view = session.get(base + url, headers=headers, params={"wait": LONG_POLL_SECONDS, "include": "jobs"},
                           timeout=LONG_POLL_SECONDS + 30).json()
        docs = [i["job"] for i in view["items"] if i.get("job_id")]  # a refused item has no job
        if all(doc["status"] in ("succeeded", "failed") for doc in docs):
            return docs, polls


def warm_up(base: str, headers: dict[str, str], blobs: list[bytes], wait: Callable[[], None] | None = None) -> None:
    """A few jobs through the whole road (first-request work in every process) before measuring."""
    run(base, headers, blobs, clients=min(len(blobs), 4), poll_interval=0.1, timeout=180, polling="interval")
    if wait is not None:
        wait()
