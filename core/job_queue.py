"""The jobs table is the queue of record; broker messages are wake-ups.

A delivery for job X claims X (when X is claimable) and up to ``BATCH_MAX - 1`` other queued jobs in
a couple of statements, under a lease in this worker's name. The worker renews its leases while it
lives (``extend_leases``) and records the whole batch in one transaction (``record_batch``). A job
whose lease runs out (its worker was killed) goes back to ``queued`` through beat's sweep
(``expire_leases``), or at once when a process on the same host sees that the lease holder's pid is
gone (``release_owner``). So a job leaves the queue only when its results are committed, whichever
message woke the worker, and nothing depends on a broker redelivering: the filesystem transport of
the embedded mode deletes a message when it is read.

Isolation: a job that was running when its worker died (``attempts > 0``) is claimed alone, so a
poison file that kills workers can only use up its own attempts, never its neighbours'.
"""

from __future__ import annotations

import enum
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Integer, String, Update, and_, any_, bindparam, case, func, or_, select, update
from sqlalchemy.orm import Session

from core.db import session_scope
from core.jobs import Verdict, document, fail, insert_results, refresh_cache
from core.models import Job, JobStatus, Media, utcnow
from core.settings import get_settings


class FirstJob(enum.Enum):
    """What became of the job the delivering message named."""

    CLAIMED = "claimed"
    DONE = "done"  # already terminal: a duplicate or late message
    LEASED = "leased"  # another live worker holds it (it is in that worker's batch)
    MISSING = "missing"
    EXHAUSTED = "exhausted"  # delivered too often: failed attempts_exhausted


@dataclass(frozen=True)
class ClaimedJob:
    id: str
    owner: str
    text: str | None
    models: list[str]
    attempts: int
    retries: int
    created_at: datetime
    started_at: datetime
    callback_url: str | None
    media: dict[str, Any] | None  # sha256, format, kind, size, width, height, storage_key
    request_id: str | None = None  # of the request that submitted it: on every log line about it

    @property
    def storage_key(self) -> str | None:
        return self.media["storage_key"] if self.media else None

    @property
    def fmt(self) -> str:
        return self.media["format"] if self.media else ""


@dataclass
class Claimed:
    jobs: list[ClaimedJob]
    first: FirstJob | None = None


@dataclass
class Outcome:
    """How one claimed job ended in this delivery: verdicts, a final failure, or a re-queue."""

    job: ClaimedJob
    verdicts: list[Verdict] = field(default_factory=list)
    error: tuple[str, str] | None = None  # (code, message) of a final failure or of the re-queue
    requeue: bool = False  # put it back for another attempt (a crash inside the job)
    transient: bool = False  # something outside the job failed: re-queue with backoff, attempt refunded


@dataclass
class Recorded:
    documents: list[dict[str, Any]]  # final job documents, for the status cache and notifications
    webhooks: list[str]  # finished jobs whose callback is now pending
    requeued: dict[str, float]  # job id -> seconds until it may be claimed again


def worker_identity() -> str:
    """``host:pid:boot`` — unique per process; the pid lets a neighbour on the same host see it died."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_is_dead_here(owner: str | None) -> bool:
    """True when ``owner`` names a process on this host that no longer exists."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    return host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))


_RETURNING = (Job.id, Job.owner, Job.text, Job.models, Job.attempts, Job.retries, Job.created_at,
              Job.started_at, Job.callback_url, Job.media_sha256, Job.request_id)

# The hot statements are built once per process and run with parameters (p_*): built per call with
# literal values, SQLAlchemy spends ~1 ms of CPU per statement on a fresh cache key (profiled).
_CLAIM_VALUES: dict[str, Any] = {
    "status": JobStatus.RUNNING, "attempts": Job.attempts + 1, "started_at": bindparam("p_now"),
    "updated_at": bindparam("p_now"), "lease_owner": bindparam("p_owner"),
    "lease_expires_at": bindparam("p_expires"), "available_at": None,
}
_CLAIM_FIRST = (
    update(Job)
    .where(Job.id == bindparam("p_first"), Job.attempts < bindparam("p_max_attempts"),
           or_(Job.status == JobStatus.QUEUED,
               and_(Job.status == JobStatus.RUNNING, Job.lease_expires_at < bindparam("p_now"))))
    .values(**_CLAIM_VALUES).returning(*_RETURNING)
)


@cache
def _claim_peers(dialect: str) -> Update:
    """Claim up to p_limit queued jobs of p_queues, oldest first, other than p_first."""
    peers = select(Job.id).where(
        Job.status == JobStatus.QUEUED, Job.queue.in_(bindparam("p_queues", expanding=True)), Job.attempts == 0,
        or_(Job.available_at.is_(None), Job.available_at <= bindparam("p_now")),
        Job.id != func.coalesce(bindparam("p_first", type_=String), ""),
    ).order_by(Job.created_at).limit(bindparam("p_limit", type_=Integer))
    if dialect == "postgresql":
        # Concurrent workers take disjoint batches. PostgreSQL may re-run an IN (… LIMIT n) subquery
        # as a join and claim more than n rows; id = ANY(ARRAY(…)) evaluates the selection once.
        chosen = Job.id == any_(func.array(peers.with_for_update(skip_locked=True).scalar_subquery()))
    else:
        chosen = Job.id.in_(peers.scalar_subquery())
    return (update(Job).where(chosen, Job.status == JobStatus.QUEUED).values(**_CLAIM_VALUES)
            .returning(*_RETURNING).execution_options(synchronize_session=False))


def _rows_to_jobs(session: Session, rows: Iterable[Any]) -> list[ClaimedJob]:
    rows = list(rows)
    shas = {r.media_sha256 for r in rows if r.media_sha256}
    media: dict[str, dict[str, Any]] = {}
    if shas:
        for m in session.scalars(select(Media).where(Media.sha256.in_(shas))):
            media[m.sha256] = {"sha256": m.sha256, "format": m.format, "kind": m.kind, "size": m.size,
                               "width": m.width, "height": m.height, "storage_key": m.storage_key}
    jobs = [ClaimedJob(r.id, r.owner, r.text, list(r.models or []), r.attempts, r.retries, r.created_at,
                       r.started_at, r.callback_url, media.get(r.media_sha256 or ""), r.request_id) for r in rows]
    return sorted(jobs, key=lambda j: j.created_at)


def claim_batch(owner: str, limit: int, lease_seconds: int, max_attempts: int,
                first: str | None = None, queues: list[str] | None = None, explain: bool = True) -> Claimed:
    """Claim ``first`` (if named and claimable) plus queued peers of ``queues`` (default: the
    inference queue), up to ``limit`` jobs in all. A worker only takes jobs routed to its queues.

    Two statements at most. ``explain`` adds a read saying why ``first`` was not claimed (and fails it
    if it used up its attempts); the worker's hot path skips it: most wake-ups find their job already
    taken by a batch, and an exhausted job is failed where its attempts run out (record_batch,
    expire_leases, release_owner)."""
    queues = queues or [get_settings().inference_queue]
    now = utcnow()
    params = {"p_now": now, "p_owner": owner, "p_expires": now + timedelta(seconds=lease_seconds),
              "p_first": first, "p_max_attempts": max_attempts, "p_queues": queues}
    state: FirstJob | None = None
    with session_scope() as session:
        claimed: list[Any] = []
        if first is not None:
            row = session.execute(_CLAIM_FIRST, params).first()
            if row is not None:
                state = FirstJob.CLAIMED
                claimed.append(row)
            elif explain:
                state = _why_not(session, first, max_attempts, now)
        suspect = bool(claimed) and claimed[0].attempts > 1  # it was running before: screen it alone
        room = 0 if suspect else limit - len(claimed)
        if room > 0:
            claimed += session.execute(_claim_peers(session.get_bind().dialect.name),
                                       {**params, "p_limit": room}).all()
        jobs = _rows_to_jobs(session, claimed)
    if state is FirstJob.EXHAUSTED and first is not None:
        fail(first, "attempts_exhausted", f"gave up after {max_attempts} attempts")
    return Claimed(jobs, state)


def _why_not(session: Session, job_id: str, max_attempts: int, now: datetime) -> FirstJob:
    job = session.get(Job, job_id)
    if job is None:
        return FirstJob.MISSING
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.EXPIRED):
        return FirstJob.DONE
    if job.attempts >= max_attempts:
        return FirstJob.EXHAUSTED
    return FirstJob.LEASED


def lease_owner(job_id: str) -> str | None:
    with session_scope() as session:
        return session.scalar(select(Job.lease_owner).where(Job.id == job_id, Job.status == JobStatus.RUNNING))


def release_owner(owner: str, max_attempts: int, code: str = "worker_lost") -> list[str]:
    """Put every job ``owner`` holds back in the queue (its process is gone), or fail it
    ``attempts_exhausted`` when that was its last attempt. Returns the re-queued ids."""
    now = utcnow()
    held = and_(Job.lease_owner == owner, Job.status == JobStatus.RUNNING)
    with session_scope() as session:
        spent = session.execute(
            update(Job).where(held, Job.attempts >= max_attempts)
            .values(status=JobStatus.FAILED, lease_owner=None, lease_expires_at=None, updated_at=now,
                    finished_at=now, error_code="attempts_exhausted",
                    error_message=f"gave up after {max_attempts} attempts (its worker died each time)",
                    webhook_status=case((Job.callback_url.is_not(None), "pending"), else_=None),
                    webhook_updated_at=now)
            .returning(Job.id).execution_options(synchronize_session=False)
        ).scalars().all()
        rows = session.execute(
            update(Job).where(held)
            .values(status=JobStatus.QUEUED, lease_owner=None, lease_expires_at=None, updated_at=now,
                    error_code=code, error_message="the worker holding this job died; re-queued")
            .returning(Job.id).execution_options(synchronize_session=False)
        ).scalars().all()
    for job_id in spent:
        refresh_cache(job_id)
    return list(rows)


def extend_leases(owner: str, job_ids: Iterable[str], lease_seconds: int) -> int:
    """Renew the leases of the jobs this worker is still working on (its heartbeat). A job it gave up
    on (its result could not be written) is not renewed, so its lease runs out and it is re-queued."""
    ids = list(job_ids)
    if not ids:
        return 0
    now = utcnow()
    with session_scope() as session:
        result = session.execute(
            update(Job).where(Job.id.in_(ids), Job.lease_owner == owner, Job.status == JobStatus.RUNNING)
            .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


# A finished job's webhook is pending exactly when it asked for one.
_WEBHOOK_PENDING = case((Job.callback_url.is_not(None), "pending"), else_=None)
_SUCCEED = (
    update(Job)
    .where(Job.id.in_(bindparam("p_ids", expanding=True)), Job.status == JobStatus.RUNNING,
           Job.lease_owner == bindparam("p_owner"))
    .values(status=JobStatus.SUCCEEDED, finished_at=bindparam("p_now"), error_code=None, error_message=None,
            webhook_status=_WEBHOOK_PENDING, webhook_updated_at=bindparam("p_now"), lease_owner=None,
            lease_expires_at=None, updated_at=bindparam("p_now"))
    .returning(Job.id, Job.callback_url).execution_options(synchronize_session=False)
)


def backoff_seconds(retries: int) -> float:
    return float(min(2 ** retries, 60))


def record_batch(owner: str, outcomes: list[Outcome], max_attempts: int, max_retries: int) -> Recorded:
    """Write a batch's results and final states in one transaction; only jobs this worker still holds
    change state (a lease that ran out belongs to whoever re-claimed the job)."""
    now = utcnow()
    finished: dict[str, tuple[str, tuple[str, str] | None]] = {}
    requeued: dict[str, float] = {}
    webhooks: list[str] = []
    held = and_(Job.status == JobStatus.RUNNING, Job.lease_owner == owner)
    cleared = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
    webhook_pending = {"webhook_status": _WEBHOOK_PENDING, "webhook_updated_at": now}
    done = [o for o in outcomes if o.error is None and not o.requeue and not o.transient]
    with session_scope() as session:
        insert_results(session, [(o.job.id, v) for o in done for v in o.verdicts])
        if done:
            rows = session.execute(_SUCCEED, {"p_ids": [o.job.id for o in done], "p_owner": owner, "p_now": now}).all()
            for row in rows:
                finished[row.id] = (JobStatus.SUCCEEDED, None)
                webhooks += [row.id] if row.callback_url else []
        for o in outcomes:
            if o.error is None and not o.requeue and not o.transient:
                continue
            code, message = o.error or ("internal_error", "unknown failure")
            exhausted = o.requeue and o.job.attempts >= max_attempts
            if exhausted:
                code, message = "attempts_exhausted", f"gave up after {max_attempts} attempts; last {code}: {message}"
            delay = 0.0
            if exhausted or (o.transient and o.job.retries >= max_retries) or not (o.requeue or o.transient):
                values: dict[str, Any] = {"status": JobStatus.FAILED, "finished_at": now, **webhook_pending}
            else:
                values = {"status": JobStatus.QUEUED}
                if o.transient:  # not the job's fault: the attempt is refunded, the retry counted, backoff
                    delay = backoff_seconds(o.job.retries)
                    values.update(attempts=Job.attempts - 1, retries=Job.retries + 1,
                                  available_at=now + timedelta(seconds=delay))
            moved = session.execute(
                update(Job).where(Job.id == o.job.id, held)
                .values(**values, error_code=code, error_message=message[:2000], **cleared)
                .returning(Job.id, Job.callback_url).execution_options(synchronize_session=False)
            ).first()
            if moved is None:
                continue  # our lease ran out and someone else owns the job now
            if values["status"] == JobStatus.QUEUED:
                requeued[moved.id] = delay
            else:
                finished[moved.id] = (JobStatus.FAILED, (code, message[:2000]))
                webhooks += [moved.id] if moved.callback_url else []
    documents = []
    for o in outcomes:
        if o.job.id in finished:
            status, error = finished[o.job.id]
            documents.append(document(
                job_id=o.job.id, owner=o.job.owner, status=status, attempts=o.job.attempts, models=o.job.models,
                media=o.job.media, created_at=o.job.created_at, updated_at=now, started_at=o.job.started_at,
                finished_at=now, verdicts=o.verdicts if status == JobStatus.SUCCEEDED else [], error=error,
                callback_url=o.job.callback_url,
            ))
    return Recorded(documents, webhooks, requeued)
