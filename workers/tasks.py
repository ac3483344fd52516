"""Celery tasks: thin wrappers that call plain functions and map their outcome to ack or retry."""

from __future__ import annotations

import logging
from dataclasses import asdict

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import SQLAlchemyError

from core import jobs
from core.settings import get_settings
from workers import screening, sweeps, webhooks
from workers.celery_app import TASK_SCREEN, TASK_SWEEP, TASK_TEXT, TASK_WEBHOOK
from workers.model_cache import get_pipeline

log = logging.getLogger(__name__)
MAX_DELIVERY_RETRIES = 12  # transient outages (store, database) are retried this often with backoff


def _backoff(retries: int) -> int:
    return min(2 ** retries, 60)


@shared_task(name=TASK_SCREEN, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def screen(self, job_id: str) -> str:  # type: ignore[no-untyped-def]
    outcome = _screen(self, job_id)
    webhooks.notify_if_finished(job_id, lambda: self.app.send_task(TASK_WEBHOOK, args=[job_id], ignore_result=True))
    return outcome


def _screen(self, job_id: str) -> str:  # type: ignore[no-untyped-def]
    transient = False
    try:
        return screening.screen_job(job_id)
    except screening.TransientError as exc:
        code, message, transient = exc.code, str(exc), True
    except SoftTimeLimitExceeded:
        code, message = "timeout", f"screening took longer than {get_settings().task_soft_time_limit} s"
    except Exception as exc:  # a bug must not lose the job: record it, retry, and fail once attempts run out
        log.exception("job %s crashed", job_id)
        code, message = "internal_error", f"{type(exc).__name__}: {exc}"
    if self.request.retries >= MAX_DELIVERY_RETRIES:
        # Out of retries: end the job with the last error instead of leaving it queued for ever.
        try:
            jobs.fail(job_id, code, message)
        except SQLAlchemyError:
            log.warning("could not fail job %s; the sweep will re-send it", job_id)
        return "failed"
    try:
        jobs.requeue(job_id, code, message, refund_attempt=transient)
    except SQLAlchemyError:
        log.warning("could not mark job %s queued; the redelivery will re-claim it", job_id)
    raise self.retry(countdown=_backoff(self.request.retries), max_retries=MAX_DELIVERY_RETRIES)


@shared_task(name=TASK_TEXT, ignore_result=False, acks_late=False)
def screen_text(texts: list[str]) -> list[dict]:
    """Synchronous text screening for POST /v1/text: the web waits on this result."""
    pipeline = get_pipeline("text")
    outcomes = pipeline.predict_texts(texts)  # type: ignore[attr-defined]
    return [{"model_version": pipeline.version, **asdict(o)} for o in outcomes]


@shared_task(name=TASK_SWEEP, ignore_result=True)
def sweep() -> dict[str, int]:
    from celery import current_app

    def enqueue(job_id: str) -> None:
        current_app.send_task(TASK_SCREEN, args=[job_id], task_id=job_id, ignore_result=True)

    return sweeps.sweep(enqueue)


@shared_task(name=TASK_WEBHOOK, bind=True, acks_late=True, ignore_result=True)
def webhook(self, job_id: str) -> str:  # type: ignore[no-untyped-def]
    """POST the finished job to its callback_url; non-2xx or a network error is retried with backoff."""
    outcome = webhooks.send(job_id)
    if outcome == "retry":
        if self.request.retries >= webhooks.MAX_RETRIES:
            log.warning("webhook for job %s gave up after %d tries", job_id, self.request.retries + 1)
            return "gave_up"
        raise self.retry(countdown=webhooks.backoff(self.request.retries), max_retries=webhooks.MAX_RETRIES)
    return outcome
