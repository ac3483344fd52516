"""Sending work to the broker from the web (by task name: the web never imports the task code)."""

from __future__ import annotations

import logging

from celery import Celery
from flask import current_app

from core.logs import request_id_var
from workers.celery_app import TASK_REPROCESS, TASK_SCREEN, TASK_TEXT, TASK_WEBHOOK

log = logging.getLogger(__name__)
RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


def celery() -> Celery:
    return current_app.extensions["deepscreen.celery"]


def enqueue_job(job_id: str) -> bool:
    """Send the job; on a broker outage the job stays queued in the database and beat re-sends it."""
    try:
        # ignore_result: nobody waits on a screening task's Celery result (the job row is the result);
        # without it every send subscribes to the result backend, which during a Redis outage retries
        # for ~20 s per request and otherwise leaves one pub/sub subscription per job in the web process.
        celery().send_task(TASK_SCREEN, args=[job_id], task_id=job_id, retry=True, retry_policy=RETRY_POLICY,
                           ignore_result=True, headers={"request_id": request_id_var.get()})
    except Exception as exc:
        log.warning("broker unavailable, job %s will be re-sent by the sweep: %s", job_id, exc)
        return False
    return True


def enqueue_webhook(job_id: str) -> None:
    try:
        celery().send_task(TASK_WEBHOOK, args=[job_id], ignore_result=True, retry=True, retry_policy=RETRY_POLICY)
    except Exception as exc:
        log.warning("broker unavailable, the webhook for job %s is not sent: %s", job_id, exc)


def enqueue_reprocess(run_id: str) -> None:
    """The first chunk of a reprocessing run (each chunk sends the next; beat resumes a lost one)."""
    try:
        celery().send_task(TASK_REPROCESS, args=[run_id], ignore_result=True, retry=True, retry_policy=RETRY_POLICY)
    except Exception as exc:
        log.warning("broker unavailable, reprocessing run %s starts at the next sweep: %s", run_id, exc)


def screen_texts(texts: list[str], timeout: float) -> list[dict]:
    result = celery().send_task(TASK_TEXT, args=[texts], retry=True, retry_policy=RETRY_POLICY,
                                headers={"request_id": request_id_var.get()})
    try:
        return result.get(timeout=timeout, propagate=True)
    finally:
        result.forget()
