"""What beat's sweep repairs, as queries: expired leases, dead local lease holders, lost wake-up
messages, webhooks still pending. The sweep (workers.sweeps) sends the messages; this module only
reads and moves rows, each move a conditional UPDATE so it cannot race a live worker.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, or_, select, update

from core.db import session_scope
from core.job_queue import owner_is_dead_here
from core.jobs import fail
from core.models import Job, JobStatus, utcnow


def expire_leases(max_attempts: int, stuck_after: timedelta, limit: int = 500) -> tuple[list[str], list[str]]:
    """Running jobs whose lease ran out (or, from before leases existed, that are stuck) → queued, or
    failed ``attempts_exhausted`` when they have used their attempts. Returns (requeued, failed)."""
    now = utcnow()
    expired = and_(Job.status == JobStatus.RUNNING, or_(
        Job.lease_expires_at < now,
        and_(Job.lease_expires_at.is_(None), Job.updated_at < now - stuck_after),
    ))
    with session_scope() as session:
        rows = session.execute(select(Job.id, Job.attempts).where(expired).limit(limit)).all()
        spent = [r.id for r in rows if r.attempts >= max_attempts]
        again = [r.id for r in rows if r.attempts < max_attempts]
        requeued: list[str] = []
        if again:
            requeued = list(session.execute(
                update(Job).where(Job.id.in_(again), expired)
                .values(status=JobStatus.QUEUED, lease_owner=None, lease_expires_at=None, updated_at=now,
                        error_code="worker_lost", error_message="the worker's lease ran out; re-queued")
                .returning(Job.id).execution_options(synchronize_session=False)
            ).scalars())
    failed = [job_id for job_id in spent
              if fail(job_id, "attempts_exhausted", f"gave up after {max_attempts} attempts (worker lost)")]
    return requeued, failed


def dead_local_owners() -> list[str]:
    """Lease holders on this host whose process is gone (kill -9, OOM): no need to wait for expiry."""
    with session_scope() as session:
        owners = session.scalars(
            select(Job.lease_owner).where(Job.status == JobStatus.RUNNING, Job.lease_owner.is_not(None)).distinct()
        ).all()
    return [o for o in owners if o and owner_is_dead_here(o)]


def lost_messages(older_than: timedelta, limit: int = 500) -> list[str]:
    """Queued jobs, claimable now, that nobody took for ``older_than``: their wake-up was lost."""
    now = utcnow()
    with session_scope() as session:
        return list(session.scalars(
            select(Job.id).where(Job.status == JobStatus.QUEUED, Job.updated_at < now - older_than,
                                 or_(Job.available_at.is_(None), Job.available_at <= now))
            .order_by(Job.updated_at).limit(limit)
        ))


def pending_webhooks(older_than: timedelta, limit: int = 500) -> list[str]:
    """Finished jobs whose callback is still pending after ``older_than`` (the delivery task was lost)."""
    now = utcnow()
    with session_scope() as session:
        ids = list(session.scalars(
            select(Job.id).where(Job.webhook_status == "pending", Job.webhook_updated_at < now - older_than)
            .limit(limit)
        ))
        if ids:
            session.execute(update(Job).where(Job.id.in_(ids)).values(webhook_updated_at=now))
    return ids


def mark_webhook(job_id: str, status: str) -> None:
    """``sent`` or ``failed`` once a delivery task is done with the job's callback."""
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id, Job.webhook_status == "pending")
                        .values(webhook_status=status, webhook_updated_at=utcnow()))
