"""Webhook delivery for finished jobs (plain functions; the Celery task in workers.tasks retries)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import requests

from core import webhooks
from core.db import session_scope
from core.jobs import job_document
from core.models import TERMINAL, Job
from core.settings import get_settings

log = logging.getLogger(__name__)
MAX_RETRIES = 8


def backoff(retries: int) -> int:
    return min(2 ** retries, 300)


def notify_if_finished(job_id: str, enqueue: Callable[[], object]) -> None:
    """After a delivery of the screening task: queue the webhook when the job is terminal and asked for one.

    A redelivered screening task can queue it twice; receivers de-duplicate (at-least-once)."""
    try:
        with session_scope() as session:
            job = session.get(Job, job_id)
            wanted = job is not None and job.callback_url and job.status in TERMINAL
        if wanted:
            enqueue()
    except Exception as exc:  # a webhook must never fail the screening task
        log.warning("could not queue the webhook for job %s: %s", job_id, exc)


def send(job_id: str) -> str:
    """One delivery attempt: ``sent``, ``retry`` (network error or non-2xx) or ``skipped``."""
    settings = get_settings()
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or not job.callback_url or job.status not in TERMINAL:
            return "skipped"
        url = job.callback_url
        doc = {k: v for k, v in job_document(job).items() if k != "owner"}
    doc["status_url"] = f"/status/{job_id}"
    if not settings.webhook_secret:
        log.warning("job %s asked for a webhook but WEBHOOK_SECRET is not set", job_id)
        return "skipped"
    try:
        status = webhooks.deliver(url, doc, settings.webhook_secret)
    except requests.RequestException as exc:
        log.info("webhook for job %s failed: %s", job_id, exc)
        return "retry"
    if 200 <= status < 300:
        return "sent"
    log.info("webhook for job %s answered %d", job_id, status)
    return "retry"
