"""Job state transitions: queued → running → succeeded | failed; queued|running → queued on retry.

Every transition is a conditional UPDATE, so a redelivered task or two racing workers cannot move a
job backwards or write it twice; results are inserted with ON CONFLICT DO NOTHING on
(job, model, model_version).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core import status_cache
from core.db import session_scope
from core.models import TERMINAL, Job, JobStatus, Media, Result, utcnow


class Claim(enum.Enum):
    CLAIMED = "claimed"  # this delivery owns the job now
    DONE = "done"  # already terminal: a duplicate delivery, nothing to do
    EXHAUSTED = "exhausted"  # delivered too often (e.g. it keeps killing workers): marked failed
    MISSING = "missing"  # no such job row


@dataclass(frozen=True)
class Verdict:
    """What one model says about one job; mirrors ml.Outcome without importing ml."""

    model: str
    model_version: str
    label: str
    score: float | None
    scores: dict[str, float]
    evidence: dict[str, Any]


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    # SQLite hands back naive datetimes; every stored time is UTC.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def job_document(job: Job) -> dict[str, Any]:
    """The JSON clients see for a job (the owner is kept for the cache's access check)."""
    return {
        "id": job.id,
        "owner": job.owner,
        "status": job.status,
        "attempts": job.attempts,
        "models": list(job.models or []),
        "media": (
            {"sha256": job.media.sha256, "format": job.media.format, "kind": job.media.kind,
             "size": job.media.size, "width": job.media.width, "height": job.media.height}
            if job.media else None
        ),
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "results": {
            r.model: {
                "model_version": r.model_version, "label": r.label, "score": r.score,
                "scores": r.scores, "evidence": r.evidence,
            }
            for r in job.results
        },
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
        "callback_url": job.callback_url,
    }


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def refresh_cache(job_id: str) -> dict[str, Any] | None:
    """Re-read the job from the database and write it to the status cache."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            return None
        doc = job_document(job)
    status_cache.put(doc)
    return doc


def upsert_media(session: Session, media: Media) -> Media:
    existing = session.get(Media, media.sha256)
    if existing is not None:
        return existing
    session.add(media)
    session.flush()
    return media


def claim(job_id: str, max_attempts: int) -> Claim:
    """Take the job for this delivery, counting the attempt; a redelivery of a running job re-claims it."""
    now = utcnow()
    with session_scope() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
                   Job.attempts < max_attempts)
            .values(status=JobStatus.RUNNING, attempts=Job.attempts + 1, started_at=now, updated_at=now)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return Claim.CLAIMED
        job = session.get(Job, job_id)
        if job is None:
            return Claim.MISSING
        if job.status in TERMINAL:
            return Claim.DONE
    fail(job_id, "attempts_exhausted", f"gave up after {max_attempts} attempts")
    return Claim.EXHAUSTED


def record_result(session: Session, job_id: str, verdict: Verdict) -> None:
    """Insert one result; a second insert for the same (job, model, version) is a no-op."""
    values = {
        "job_id": job_id, "model": verdict.model, "model_version": verdict.model_version,
        "label": verdict.label, "score": verdict.score, "scores": verdict.scores,
        "evidence": verdict.evidence, "created_at": utcnow(),
    }
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(Result).values(**values).on_conflict_do_nothing(
        index_elements=["job_id", "model", "model_version"]
    )
    session.execute(stmt)


def _transition(job_id: str, from_states: tuple[str, ...], **values: Any) -> bool:
    now = utcnow()
    with session_scope() as session:
        result = session.execute(
            update(Job).where(Job.id == job_id, Job.status.in_(from_states)).values(updated_at=now, **values)
        )
        changed = result.rowcount == 1  # type: ignore[attr-defined]
    if changed:
        refresh_cache(job_id)
    return changed



def succeed(job_id: str, verdicts: list[Verdict]) -> bool:
    """Write every verdict and the final status in one transaction."""
    now = utcnow()
    with session_scope() as session:
        for verdict in verdicts:
            record_result(session, job_id, verdict)
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
            .values(status=JobStatus.SUCCEEDED, finished_at=now, updated_at=now, error_code=None,
                    error_message=None)
        )
        changed = result.rowcount == 1  # type: ignore[attr-defined]
    refresh_cache(job_id)
    return changed


def fail(job_id: str, code: str, message: str) -> bool:
    return _transition(
        job_id, (JobStatus.QUEUED, JobStatus.RUNNING),
        status=JobStatus.FAILED, error_code=code, error_message=message[:2000], finished_at=utcnow(),
    )


def requeue(job_id: str, code: str, message: str, refund_attempt: bool = False) -> bool:
    """running → queued before a retry; the error stays visible until the job finishes.

    ``refund_attempt``: the delivery failed on something outside the job (object store, database),
    so it must not count toward MAX_ATTEMPTS, which bounds jobs that crash or time out their worker;
    otherwise a few seconds of store outage would fail good jobs as ``attempts_exhausted``.
    """
    extra = {"attempts": Job.attempts - 1} if refund_attempt else {}
    return _transition(
        job_id, (JobStatus.RUNNING,), status=JobStatus.QUEUED, error_code=code, error_message=message[:2000],
        **extra,
    )


def stale_jobs(session: Session, status: str, older_than: timedelta, limit: int = 500) -> list[str]:
    """Ids of jobs sitting in ``status`` without an update for longer than ``older_than``."""
    cutoff = utcnow() - older_than
    rows = session.execute(
        select(Job.id).where(Job.status == status, Job.updated_at < cutoff).order_by(Job.updated_at).limit(limit)
    )
    return list(rows.scalars())


def touch(job_id: str) -> None:
    """Mark a stale job as just looked at, so the next sweep does not resend it at once."""
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow()))
