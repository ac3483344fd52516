"""Screening one job: claim → fetch bytes → decode → run each model → record results → finish.

A plain function so tests and benchmarks can call it without a broker; the Celery task only maps
its outcome to ack / retry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError

from core import jobs
from core.db import session_scope
from core.models import Job
from core.object_store import BlobMissing, StorageUnavailable, get_store
from core.settings import get_settings
from ml.decode import DecodeLimits, decode
from ml.manifest import ModelError
from ml.types import MediaError
from workers import metrics
from workers.model_cache import get_pipeline

log = logging.getLogger(__name__)


class TransientError(RuntimeError):
    """Something outside the job failed (store, database): retry later, the job is still good."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class JobInput:
    job_id: str
    storage_key: str
    fmt: str
    text: str | None
    models: list[str]


def _load(job_id: str) -> JobInput | None:
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.media is None:
            return None
        return JobInput(job.id, job.media.storage_key, job.media.format, job.text, list(job.models))


def screen_job(job_id: str) -> str:
    """Run one delivery of a job. Returns the resulting status; raises TransientError to ask for a retry."""
    settings = get_settings()
    try:
        claim = jobs.claim(job_id, settings.max_attempts)
    except OperationalError as exc:
        raise TransientError("database_unavailable", str(exc)) from exc
    if claim is not jobs.Claim.CLAIMED:
        log.info("job %s not claimed: %s", job_id, claim.value)
        return claim.value
    jobs.refresh_cache(job_id)
    started = time.perf_counter()
    try:
        job = _load(job_id)
        if job is None:
            jobs.fail(job_id, "media_missing", "the job has no stored media")
            return "failed"
        data = get_store().get(job.storage_key)
        limits = DecodeLimits(settings.max_image_pixels, settings.max_video_seconds, settings.max_video_frames)
        item = decode(data, job.fmt, limits, job.text)
        verdicts = []
        for name in job.models:
            pipeline = get_pipeline(name)
            outcome = pipeline.predict([item])[0]
            verdicts.append(jobs.Verdict(name, pipeline.version, outcome.label, outcome.score,
                                         outcome.scores, outcome.evidence))
        jobs.succeed(job_id, verdicts)
        metrics.observe(job.fmt, "succeeded", time.perf_counter() - started)
        return "succeeded"
    except MediaError as exc:
        jobs.fail(job_id, exc.code, exc.message)
    except ModelError as exc:
        jobs.fail(job_id, exc.code, str(exc))
    except BlobMissing:
        jobs.fail(job_id, "media_missing", "the uploaded file is no longer in the object store")
    except StorageUnavailable as exc:
        raise TransientError("storage_unavailable", str(exc)) from exc
    except OperationalError as exc:
        raise TransientError("database_unavailable", str(exc)) from exc
    metrics.observe("", "failed", time.perf_counter() - started)
    return "failed"
