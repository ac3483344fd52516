"""Webhook delivery for finished jobs (plain functions; the Celery task in workers.tasks retries)."""

from __future__ import annotations

import logging

from core import webhooks
from core.db import session_scope
from core.jobs import history, job_document
from core.models import TERMINAL, Job
from core.settings import get_settings
from core.url_fetch import UrlRejected

log = logging.getLogger(__name__)
MAX_RETRIES = 8


def backoff(retries: int) -> int:
    return min(2 ** retries, 300)


def send(job_id: str, event: str = "job.finished") -> str:
    """One delivery attempt: ``sent``, ``retry`` (network error or non-2xx), ``refused`` (the callback's
    host resolves to an address the SSRF guard refuses: not retried) or ``skipped``.

    ``job.rescreened``: a reprocessing run changed the job's verdict; sent only to jobs that opted in
    (``notify_rescreen``), with every version's result so the receiver sees old and new."""
    settings = get_settings()
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or not job.callback_url or job.status not in TERMINAL:
            return "skipped"
        if event == "job.finished" and job.webhook_status == "sent":
            return "skipped"  # a duplicate task after a delivery that succeeded
        if event == "job.rescreened" and not job.notify_rescreen:
            return "skipped"
        url = job.callback_url
        doc = {k: v for k, v in job_document(job).items() if k != "owner"}
        extra = {"results_history": history(job)} if event == "job.rescreened" else None
    doc["status_url"] = f"/status/{job_id}"
    if not settings.webhook_secret:
        log.warning("job %s asked for a webhook but WEBHOOK_SECRET is not set", job_id)
        return "skipped"
    try:
        status = webhooks.deliver(url, doc, settings.webhook_secret, settings.webhook_hosts, event=event, extra=extra)
    except UrlRejected as exc:
        if exc.code == "url_not_allowed":  # the host resolves inside the network now: never call it
            log.warning("webhook for job %s refused: %s", job_id, exc.message)
            return "refused"
        log.info("webhook for job %s failed: %s", job_id, exc.message)
        return "retry"
    if 200 <= status < 300:
        return "sent"
    log.info("webhook for job %s answered %d", job_id, status)
    return "retry"
