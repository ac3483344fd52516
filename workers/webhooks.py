"""Webhook delivery for finished jobs (plain functions; the Celery task in workers.tasks retries)."""

from __future__ import annotations

import logging

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


def send(job_id: str) -> str:
    """One delivery attempt: ``sent``, ``retry`` (network error or non-2xx) or ``skipped``."""
    settings = get_settings()
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or not job.callback_url or job.status not in TERMINAL or job.webhook_status == "sent":
            return "skipped"  # none wanted, or a duplicate task after a delivery that succeeded
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
