"""Retention: uploads and results older than RETENTION_DAYS (or their API key's own retention) expire.

An expired job keeps its row (status ``expired``): with KEEP_VERDICTS its verdict summary stays (label,
score, model version — the evidence is dropped), otherwise its results go. A blob is deleted from the
object store once no unexpired job needs it, and its media row is marked deleted (a later upload of the
same bytes stores them again).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, exists, func, select, update

from core.db import session_scope
from core.jobs import refresh_cache
from core.models import TERMINAL, ApiKey, Job, JobStatus, Media, Result, utcnow
from core.object_store import BlobMissing, ObjectStore

log = logging.getLogger(__name__)


def expire(store: ObjectStore, days: float, keep_verdicts: bool, limit: int = 500) -> dict[str, int]:
    """One pass: expire finished jobs past their retention, then delete the blobs nobody needs."""
    now = utcnow()
    with session_scope() as session:
        rows = session.execute(select(ApiKey.subject, ApiKey.retention_days)
                               .where(ApiKey.retention_days.is_not(None))).all()
    overrides = {subject: days_ for subject, days_ in rows}
    due: list[str] = []
    with session_scope() as session:
        windows: dict[str | None, float] = {subject: float(d) for subject, d in overrides.items() if d}
        windows[None] = days
        for subject, window in windows.items():
            if not window:
                continue
            query = select(Job.id).where(Job.status.in_([JobStatus.SUCCEEDED, JobStatus.FAILED]),
                                         func.coalesce(Job.finished_at, Job.created_at) < now - timedelta(days=window))
            query = query.where(Job.owner == subject) if subject else query.where(Job.owner.not_in(list(overrides)))
            due += list(session.scalars(query.limit(limit)))
    expired = _expire_jobs(due, keep_verdicts)
    deleted = delete_orphan_blobs(store, limit)
    if expired or deleted:
        log.info("retention: %d jobs expired, %d blobs deleted", expired, deleted)
    return {"expired": expired, "blobs_deleted": deleted}


def _expire_jobs(job_ids: list[str], keep_verdicts: bool) -> int:
    if not job_ids:
        return 0
    now = utcnow()
    with session_scope() as session:
        changed = list(session.execute(
            update(Job).where(Job.id.in_(job_ids), Job.status.in_([JobStatus.SUCCEEDED, JobStatus.FAILED]))
            .values(status=JobStatus.EXPIRED, updated_at=now, text=None)
            .returning(Job.id).execution_options(synchronize_session=False)
        ).scalars())
        if changed:
            if keep_verdicts:  # the tombstone: who said what, not why
                session.execute(update(Result).where(Result.job_id.in_(changed))
                                .values(evidence={"expired": True}).execution_options(synchronize_session=False))
            else:
                session.execute(delete(Result).where(Result.job_id.in_(changed)))
    for job_id in changed:
        refresh_cache(job_id)
    return len(changed)


def delete_orphan_blobs(store: ObjectStore, limit: int = 500) -> int:
    """Blobs whose every job has expired (none queued, running or finished within retention)."""
    alive = exists().where(Job.media_sha256 == Media.sha256, Job.status != JobStatus.EXPIRED)
    with session_scope() as session:
        orphans = session.execute(select(Media.sha256, Media.storage_key)
                                  .where(Media.deleted_at.is_(None), ~alive).limit(limit)).all()
    deleted = 0
    for sha256, key in orphans:
        with contextlib.suppress(BlobMissing):
            store.delete(key)
        with session_scope() as session:  # only if still unused: a new upload may have come meanwhile
            done = session.execute(update(Media).where(Media.sha256 == sha256, Media.deleted_at.is_(None),
                                                       ~alive).values(deleted_at=utcnow())).rowcount  # type: ignore[attr-defined]
        deleted += int(done or 0)
    return deleted


def summary(job_id: str) -> dict[str, Any] | None:
    """What an expired job still says (for tests and the admin CLI)."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            return None
        return {"status": job.status, "terminal": job.status in TERMINAL,
                "results": {r.model: {"version": r.model_version, "label": r.label, "score": r.score}
                            for r in job.results},
                "media_deleted": bool(job.media and job.media.deleted_at)}



