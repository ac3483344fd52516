"""Batches: many submissions in one request, one id to follow them by.

A batch is a row that claims the caller's Idempotency-Key first (so a retried request finds it
instead of making twins), then one job per accepted item, each made by core.submissions.submit like
any other job and tagged with ``batch_id``; the row's ``items`` records, in order, each item's job id
or why it was refused. The jobs table stays the one truth about status: a batch's counts and item
states are read from it, so a batch needs no state of its own and no worker knows batches exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from core.db import session_scope
from core.jobs import batch_documents
from core.models import Batch, Job, JobStatus, new_id, utcnow

MAX_ITEMS = 100
COUNTED = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.EXPIRED)
REJECTED = "rejected"  # an item refused at submission: it has an error and no job


class Row(NamedTuple):
    id: str
    status: str
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class Opened:
    id: str
    created: bool  # False: the Idempotency-Key named an earlier batch, which is returned instead


def item(index: int, job_id: str | None, error: tuple[str, str] | None = None) -> dict[str, Any]:
    return {"index": index, "job_id": job_id,
            "error": {"code": error[0], "message": error[1]} if error else None}


def open_batch(owner: str, size: int, idempotency_key: str | None = None) -> Opened:
    """Create the batch row (committed, so its jobs can refer to it), or find the one this
    Idempotency-Key already made."""
    if idempotency_key:
        with session_scope() as session:
            found = session.scalar(select(Batch.id).where(Batch.owner == owner,
                                                          Batch.idempotency_key == idempotency_key))
        if found:
            return Opened(found, created=False)
    batch_id = new_id()
    try:
        with session_scope() as session:
            session.add(Batch(id=batch_id, owner=owner, idempotency_key=idempotency_key, size=size, items=[],
                              created_at=utcnow()))
    except IntegrityError:  # a concurrent request with the same key won the race
        with session_scope() as session:
            found = session.scalar(select(Batch.id).where(Batch.owner == owner,
                                                          Batch.idempotency_key == idempotency_key))
        if found is None:
            raise
        return Opened(found, created=False)
    return Opened(batch_id, created=True)


def close_batch(batch_id: str, items: list[dict[str, Any]]) -> None:
    """Record every item (job id or refusal), in order."""
    with session_scope() as session:
        session.execute(update(Batch).where(Batch.id == batch_id).values(items=items))


def _iso(value: datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def batch_view(batch_id: str, owner: str, with_jobs: bool = False) -> dict[str, Any] | None:
    """``{id, created_at, counts, items}`` for the owner's batch; None for a missing or foreign one.
    ``with_jobs``: each item that has a job also carries its whole document (``job``: verdicts and
    all), read for the whole batch at once (core.jobs.batch_documents)."""
    if len(batch_id) > 36 or "\x00" in batch_id:  # PostgreSQL refuses NUL with an error, not a miss
        return None
    with session_scope() as session:
        batch = session.get(Batch, batch_id)
        if batch is None or batch.owner != owner:
            return None
        documents = batch_documents(session, batch_id) if with_jobs else {}
        rows: list[Any]
        if with_jobs:
            rows = [Row(d["id"], d["status"], (d["error"] or {}).get("code"), (d["error"] or {}).get("message"))
                    for d in documents.values()]
        else:
            rows = list(session.execute(select(Job.id, Job.status, Job.error_code, Job.error_message)
                                        .where(Job.batch_id == batch_id)))
        stored, created_at = list(batch.items or []), batch.created_at
    jobs = {r.id: r for r in rows}
    counts = {str(status): 0 for status in COUNTED}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    items = []
    for entry in stored:
        index, job_id = entry["index"], entry.get("job_id")
        job = jobs.get(job_id or "")
        if job_id is None:
            items.append({"index": index, "job_id": None, "status": REJECTED, "error": entry.get("error")})
        elif job is None:  # removed by retention
            items.append({"index": index, "job_id": job_id, "status": str(JobStatus.EXPIRED), "error": None})
        else:
            failed = job.status == JobStatus.FAILED and job.error_code
            items.append({"index": index, "job_id": job_id, "status": job.status,
                          "error": {"code": job.error_code, "message": job.error_message or ""} if failed else None})
        if with_jobs and job_id is not None:
            items[-1]["job"] = documents.get(job_id)
    return {"id": batch_id, "created_at": _iso(created_at), "counts": counts, "items": items}


def unfinished(view: dict[str, Any]) -> bool:
    return bool(view["counts"].get(JobStatus.QUEUED) or view["counts"].get(JobStatus.RUNNING))
