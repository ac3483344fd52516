"""Celery tasks: thin wrappers that call plain functions and map their outcome to ack or retry."""

from __future__ import annotations

import logging
from dataclasses import asdict

from celery import current_app, shared_task

from core import repairs
from workers import reprocessing, screening, sweeps, webhooks
from workers.celery_app import (
    TASK_MAINTAIN,
    TASK_REPROCESS,
    TASK_SCREEN,
    TASK_SWEEP,
    TASK_TEXT,
    TASK_WEBHOOK,
)
from workers.metrics import WEBHOOKS
from workers.model_cache import get_pipeline

log = logging.getLogger(__name__)
MAX_DATABASE_RETRIES = 12


def _backoff(retries: int) -> int:
    return min(2 ** retries, 60)


def wake(job_id: str, countdown: float = 0.0) -> None:
    """A wake-up for a queued job (its id rides along for logs; any queued job may be claimed)."""
    current_app.send_task(TASK_SCREEN, args=[job_id], ignore_result=True,
                          countdown=countdown if countdown > 0 else None)


def send_webhook(job_id: str, event: str = "job.finished") -> None:
    current_app.send_task(TASK_WEBHOOK, args=[job_id], kwargs={"event": event}, ignore_result=True)


def send_rescreened(job_id: str) -> None:
    send_webhook(job_id, "job.rescreened")


def schedule_chunk(run_id: str, countdown: float = 0.0) -> None:
    current_app.send_task(TASK_REPROCESS, args=[run_id], ignore_result=True,
                          countdown=countdown if countdown > 0 else None)


@shared_task(name=TASK_SCREEN, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def screen(self, job_id: str) -> dict:  # type: ignore[no-untyped-def]
    """Acked after the batch it claimed is recorded; a killed worker's jobs come back through their leases."""
    try:
        delivery = screening.deliver(job_id, wake, send_webhook)
    except screening.DatabaseUnavailable as exc:
        if self.request.retries >= MAX_DATABASE_RETRIES:
            log.warning("database unavailable for %s after %d tries; the sweep re-sends it", job_id,
                        self.request.retries)
            return {"first": "database_unavailable"}
        raise self.retry(countdown=_backoff(self.request.retries), max_retries=MAX_DATABASE_RETRIES) from exc
    return asdict(delivery)


@shared_task(name=TASK_TEXT, ignore_result=False, acks_late=False)
def screen_text(texts: list[str]) -> list[dict]:
    """Synchronous text screening for POST /v1/text: the web waits on this result."""
    pipeline = get_pipeline("text")
    outcomes = pipeline.predict_texts(texts)  # type: ignore[attr-defined]
    return [{"model_version": pipeline.version, "validation": pipeline.manifest.quality(), **asdict(o)}
            for o in outcomes]


@shared_task(name=TASK_SWEEP, ignore_result=True)
def sweep() -> dict[str, int]:
    return sweeps.sweep(wake, send_webhook, schedule_chunk)


@shared_task(name=TASK_MAINTAIN, ignore_result=True)
def maintain() -> dict:
    """The slower housekeeping: scheduled reprocessing, retention, drift of live versions."""
    return sweeps.maintain(schedule_chunk)


@shared_task(name=TASK_REPROCESS, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def reprocess_chunk(self, run_id: str) -> dict:  # type: ignore[no-untyped-def]
    """One chunk of a reprocessing run; it schedules the next. A lost chunk is re-sent by the sweep."""
    return reprocessing.run_chunk(run_id, schedule_chunk, send_rescreened)


@shared_task(name=TASK_WEBHOOK, bind=True, acks_late=True, ignore_result=True)
def webhook(self, job_id: str, event: str = "job.finished") -> str:  # type: ignore[no-untyped-def]
    """POST the job to its callback_url; non-2xx or a network error is retried with backoff."""
    outcome = webhooks.send(job_id, event)
    if outcome == "retry":
        if self.request.retries >= webhooks.MAX_RETRIES:
            log.warning("webhook for job %s gave up after %d tries", job_id, self.request.retries + 1)
            if event == "job.finished":
                repairs.mark_webhook(job_id, "failed")
            WEBHOOKS.labels("gave_up").inc()
            return "gave_up"
        WEBHOOKS.labels("retry").inc()
        raise self.retry(countdown=webhooks.backoff(self.request.retries), max_retries=webhooks.MAX_RETRIES,
                         kwargs={"event": event})
    if outcome in ("sent", "refused") and event == "job.finished":
        repairs.mark_webhook(job_id, "sent" if outcome == "sent" else "failed")
    WEBHOOKS.labels(outcome).inc()
    return outcome
