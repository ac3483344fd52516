"""One chunk of a reprocessing run: take the run's lease, screen its next chunk with the run's pinned
model version, record it (core.reprocess), refresh the jobs' cached documents, tell owners who asked
(webhook ``job.rescreened``) when a verdict flipped, and schedule the next chunk within the rate.

Live traffic comes first: while live jobs wait in the queue a chunk yields (it reschedules itself
without screening), so a run only uses capacity the live road leaves free.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from core import jobs, reprocess
from core.db import session_scope
from core.lifecycle_models import VersionState
from core.models import Job, JobStatus, utcnow
from core.object_store import get_store
from core.settings import get_settings
from ml.decode import DecodeLimits
from workers import metrics, process
from workers.batch import BatchTimer, infer, prepare
from workers.model_cache import get_pipeline

log = logging.getLogger(__name__)
YIELD_SECONDS = 1.0


def live_backlog(older_than: timedelta = timedelta(seconds=0.5)) -> int:
    """Live jobs waiting to be claimed (a moment's grace: a job queued this instant is not a backlog)."""
    settings = get_settings()
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Job).where(
            Job.status == JobStatus.QUEUED, Job.queue == settings.inference_queue,
            Job.created_at < utcnow() - older_than)) or 0


def run_chunk(run_id: str, schedule: Callable[[str, float], None], rescreened: Callable[[str], None]) -> dict[str, Any]:
    """Screen one chunk; ``schedule(run_id, delay)`` sends the next, ``rescreened(job_id)`` a webhook."""
    if live_backlog():
        schedule(run_id, YIELD_SECONDS)
        return {"run": run_id, "yielded": True}
    claimed = reprocess.claim_chunk(run_id)
    if claimed is None:
        return {"run": run_id, "skipped": True}  # cancelled, finished, or another worker holds it
    run, chunk = claimed
    started = time.monotonic()
    pipeline = get_pipeline(run["model"], run["version"])
    settings = get_settings()
    timer = BatchTimer()
    limits = DecodeLimits(settings.max_image_pixels, settings.max_video_seconds, settings.max_video_frames)
    prepared = prepare(chunk, get_store(), limits, process.current().fetch_pool, timer)
    outcomes = infer(prepared, lambda _name: pipeline, timer, kind="reprocess")
    screened = []
    for outcome in outcomes:
        verdict = outcome.verdicts[0] if outcome.verdicts and not outcome.error else None
        error = None if verdict else ":".join(outcome.error or ("failed", "no verdict"))
        screened.append((outcome.job, verdict, error))
        metrics.REPROCESSED.labels(run["model"], run["version"], "done" if verdict else "failed").inc()
    recorded = reprocess.record_chunk(run_id, screened)
    timer.export()
    if recorded["kind"] == "reprocess":  # the live version's result is now each job's verdict: refresh the cache
        for job, verdict, _ in screened:
            if verdict is not None:
                jobs.refresh_cache(job.id)
    for job_id in recorded["flipped"]:
        rescreened(job_id)
    if recorded["run"]["status"] == "running":
        pace = len(chunk) / max(run["rate_limit"], 1e-6)
        schedule(run_id, max(0.0, pace - (time.monotonic() - started)))
    else:
        log.info("reprocessing run %s finished: %s", run_id, recorded["run"])
    return {"run": run_id, "screened": len(screened), "flipped": len(recorded["flipped"]),
            "status": recorded["run"]["status"]}


def due_runs(every: timedelta | None) -> list[tuple[str, str, str, Any]]:
    """(model, version, trigger, since) for live versions that need a run now:

    - catch-up: uploads screened by an older version after this one was promoted (workers follow a
      promotion within seconds; a job claimed in between got the old version) and no run is going;
    - schedule: with ``every``, when the last run is older than that (it only re-screens what lacks a
      result, so a run over a quiet day costs nothing)."""
    from core.lifecycle_models import ModelVersion, ReprocessRun
    from core.models import Result

    now = utcnow()
    due: list[tuple[str, str, str, Any]] = []
    with session_scope() as session:
        live = session.scalars(select(ModelVersion).where(ModelVersion.state == VersionState.LIVE)).all()
        for version in live:
            going = session.scalar(select(func.count()).select_from(ReprocessRun).where(
                ReprocessRun.model == version.name, ReprocessRun.version == version.version,
                ReprocessRun.status == "running"))
            if going:
                continue
            promoted = _aware(version.promoted_at or version.created_at)
            since = promoted - timedelta(minutes=5)
            stale = session.scalar(select(func.count()).select_from(Result).join(Job).where(
                Result.model == version.name, Result.model_version != version.version, Result.kind == "verdict",
                Result.created_at >= promoted, Job.created_at >= since,
                ~select(Result.id).where(Result.job_id == Job.id, Result.model == version.name,
                                         Result.model_version == version.version).exists()))
            if stale:
                due.append((version.name, version.version, "catch-up", since))
                continue
            last = session.scalar(select(func.max(ReprocessRun.created_at)).where(
                ReprocessRun.model == version.name, ReprocessRun.version == version.version))
            if every is not None and (last is None or _aware(last) < now - every):
                due.append((version.name, version.version, "schedule", None))
    return due


def _aware(value: Any) -> Any:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)
