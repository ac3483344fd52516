"""One delivery of the screening task: claim a batch → fetch/decode → models → record → repeat while
queued work remains (up to DRAIN_SECONDS), preparing the next batch while the models run.

Plain functions; the Celery task (workers.tasks) only passes the message's job id and the ways to
send messages. Returns a small summary for logs and tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC

from sqlalchemy.exc import OperationalError

from core import job_queue, logs, status_cache
from core.job_queue import Claimed, Outcome
from core.object_store import get_store
from core.settings import get_settings
from ml.decode import DecodeLimits
from workers import metrics, model_cache, process
from workers.batch import BatchTimer, Prepared, infer, prepare
from workers.model_cache import get_pipeline

log = logging.getLogger(__name__)
MAX_DELIVERY_RETRIES = 12  # transient failures (store down) of one job before it fails with that code
RECORD_RETRIES = 5  # tries to write a batch's results through a database outage (1+2+4+8 s of waiting)


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached: the message is retried later (the job row is safe)."""


@dataclass
class Delivery:
    first: str  # what became of the message's own job
    batches: list[int] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)


Send = Callable[[str, float], None]  # (job id, countdown seconds) → a wake-up message


def _claim(first: str | None) -> Claimed:
    settings = get_settings()
    worker = process.current()
    queues = worker.inference_queues or [settings.inference_queue]
    claimed = job_queue.claim_batch(worker.identity, settings.batch_max, settings.lease_seconds,
                                    settings.max_attempts, first, queues, explain=False)
    worker.hold([j.id for j in claimed.jobs])
    suspect = claimed.jobs and claimed.jobs[0].attempts > 1
    if claimed.jobs and len(claimed.jobs) < settings.batch_max and settings.batch_wait_ms and not suspect:
        time.sleep(settings.batch_wait_ms / 1000)  # let a burst fill the batch (GPU throughput)
        more = job_queue.claim_batch(worker.identity, settings.batch_max - len(claimed.jobs),
                                     settings.lease_seconds, settings.max_attempts, queues=queues, explain=False)
        worker.hold([j.id for j in more.jobs])
        claimed.jobs += more.jobs
    if claimed.jobs:
        metrics.BATCH_SIZE.labels(queues[0]).observe(len(claimed.jobs))
        now = time.time()
        for job in claimed.jobs:
            created = job.created_at if job.created_at.tzinfo else job.created_at.replace(tzinfo=UTC)
            metrics.QUEUE_SECONDS.labels(queues[0]).observe(max(0.0, now - created.timestamp()))
    return claimed


def _plan(first: str | None, timer: BatchTimer) -> list[Prepared]:
    """Claim a batch and fetch/decode it (runs on the planner thread for the next batch)."""
    settings = get_settings()
    claimed = _claim(first)
    if not claimed.jobs:
        return []
    limits = DecodeLimits(settings.max_image_pixels, settings.max_video_seconds, settings.max_video_frames)
    return prepare(claimed.jobs, get_store(), limits, process.current().fetch_pool, timer)


def _finish(outcomes: list[Outcome], timer: BatchTimer, wake: Send, webhook: Callable[[str], None],
            delivery: Delivery) -> None:
    settings = get_settings()
    worker = process.current()
    started = time.perf_counter()
    ids = [o.job.id for o in outcomes]
    try:
        recorded = _record(worker.identity, outcomes, settings.max_attempts)
    finally:
        worker.let_go(ids)  # recorded, or given up: either way its lease is no longer renewed
    timer.add("record", time.perf_counter() - started)
    status_cache.put_many(recorded.documents)
    request_ids = {o.job.id: o.job.request_id for o in outcomes}
    for doc in recorded.documents:
        delivery.statuses[doc["id"]] = doc["status"]
        code = (doc.get("error") or {}).get("code") or ""
        for model in doc["models"]:
            metrics.JOBS_FINISHED.labels(model, doc["status"], code).inc()
        with logs.job_context(doc["id"], request_ids.get(doc["id"])):
            log.info("job %s %s%s", doc["id"], doc["status"], f" ({code})" if code else "", extra={
                "status": doc["status"], "error_code": code or None, "batch_size": len(outcomes),
                "models": {m: r["model_version"] for m, r in doc["results"].items()}})
    for job_id in recorded.webhooks:
        webhook(job_id)
    for job_id, delay in recorded.requeued.items():
        delivery.statuses[job_id] = "queued"
        with logs.job_context(job_id, request_ids.get(job_id)):
            log.info("job %s re-queued (retry in %.0f s)", job_id, delay)
        wake(job_id, delay)


def _record(owner: str, outcomes: list[Outcome], max_attempts: int) -> job_queue.Recorded:
    """Record, riding out a short database outage (the verdicts are worth keeping); after
    RECORD_RETRIES the jobs' leases run out and the sweep re-queues them."""
    for attempt in range(RECORD_RETRIES):
        try:
            return job_queue.record_batch(owner, outcomes, max_attempts, MAX_DELIVERY_RETRIES)
        except OperationalError as exc:
            if attempt == RECORD_RETRIES - 1:
                raise
            log.warning("database unavailable while recording %d jobs (%s); retrying in %d s", len(outcomes),
                        type(exc).__name__, min(2 ** attempt, 8))
            time.sleep(min(2 ** attempt, 8))
    raise AssertionError("unreachable")


def already_final(job_id: str) -> bool:
    """Whether the job's final document is in the status cache: a batch already screened it.

    Most wake-ups name a job that an earlier delivery's batch took; a final job never leaves its
    final state, so such a message is answered without the database (a cache miss just claims)."""
    doc = status_cache.get(job_id)
    return doc is not None and doc.get("status") in status_cache.FINAL


def deliver(job_id: str, wake: Send, webhook: Callable[[str], None]) -> Delivery:
    """Screen the message's job and whatever else is queued, batch after batch, for up to DRAIN_SECONDS."""
    if already_final(job_id):
        return Delivery(first=job_queue.FirstJob.DONE.value)
    settings = get_settings()
    worker = process.current()
    deadline = time.monotonic() + settings.drain_seconds
    timer = BatchTimer()
    try:
        claimed = _claim(job_id)
    except OperationalError as exc:
        raise DatabaseUnavailable(str(exc)) from exc
    delivery = Delivery(first=claimed.first.value if claimed.first else "not_claimed")
    if not claimed.jobs:
        return delivery
    limits = DecodeLimits(settings.max_image_pixels, settings.max_video_seconds, settings.max_video_frames)
    batch = prepare(claimed.jobs, get_store(), limits, worker.fetch_pool, timer)
    pending: Future[list[Prepared]] | None = None
    try:
        while batch:
            delivery.batches.append(len(batch))
            if time.monotonic() < deadline:
                pending = worker.planner.submit(_plan, None, timer)
            outcomes = infer(batch, get_pipeline, timer, model_cache.shadows)
            try:
                _finish(outcomes, timer, wake, webhook, delivery)
            except OperationalError as exc:  # the leases run out and the sweep re-queues these jobs
                log.warning("could not record a batch of %d: %s", len(outcomes), exc)
            batch = []
            if pending is not None:
                try:
                    batch = pending.result()
                except OperationalError as exc:
                    log.warning("could not claim the next batch: %s", exc)
                pending = None
    except BaseException as exc:  # a time limit or shutdown mid-batch: hand every held job back at once
        held = batch + (pending.result() if pending is not None and not pending.cancel() else [])
        if held:
            reason = ("timeout", f"screening took longer than {settings.task_soft_time_limit} s")
            _finish([Outcome(p.job, error=reason, requeue=True) for p in held], timer, wake, webhook, delivery)
        log.warning("delivery of %s interrupted (%s); %d jobs handed back", job_id, type(exc).__name__, len(held))
        raise
    timer.export()
    return delivery
