"""Jobs: the document clients see, results, and the single-job transitions the sweeps and web use.

State machine: queued → running → succeeded | failed; running → queued when a worker dies or a
transient error asks for a retry (core.job_queue). Every transition is a conditional UPDATE, so a
redelivered message or two racing workers cannot move a job backwards or write it twice; results are
inserted with ON CONFLICT DO NOTHING on (job, model, model_version).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Insert, Select, Table, bindparam, select, update
from sqlalchemy.orm import Session

from core import status_cache
from core.db import session_scope, upsert
from core.models import TERMINAL, Job, JobStatus, Media, Result, utcnow


@dataclass(frozen=True)
class Verdict:
    """What one model says about one job; mirrors ml.Outcome without importing ml."""

    model: str
    model_version: str
    label: str
    score: float | None
    scores: dict[str, float]
    evidence: dict[str, Any]
    validation: dict[str, Any] | None = None
    kind: str = "verdict"  # verdict | reprocess | shadow (never shown as the verdict)


# Results recorded before validation blocks existed say so explicitly rather than showing nothing.
NOT_VALIDATED: dict[str, Any] = {"status": "not_validated_on_real_data", "summary": "not validated on real data",
                                 "datasets": []}


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    # SQLite hands back naive datetimes; every stored time is UTC.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def media_fields(media: Media | None) -> dict[str, Any] | None:
    if media is None:
        return None
    return {"sha256": media.sha256, "format": media.format, "kind": media.kind, "size": media.size,
            "width": media.width, "height": media.height}


def document(*, job_id: str, owner: str, status: str, attempts: int, models: list[str],
             media: dict[str, Any] | None, created_at: datetime | None, updated_at: datetime | None,
             started_at: datetime | None, finished_at: datetime | None, verdicts: list[Verdict],
             error: tuple[str | None, str | None] | None, callback_url: str | None) -> dict[str, Any]:
    """The JSON clients see for a job (the owner is kept for the cache's access check).

    The one builder of it: from a row (``job_document``) or from what a worker already holds after
    recording a batch, so the worker need not read the job back.
    """
    public_media = {k: v for k, v in media.items() if k != "storage_key"} if media else None
    return {
        "id": job_id,
        "owner": owner,
        "status": str(status),
        "attempts": attempts,
        "models": list(models or []),
        "media": public_media,
        "created_at": _iso(created_at),
        "updated_at": _iso(updated_at),
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "results": {v.model: _result(v) for v in verdict_per_model(verdicts)},
        "error": {"code": error[0], "message": error[1]} if error and error[0] else None,
        "callback_url": callback_url,
    }


def _result(v: Verdict) -> dict[str, Any]:
    return {"model_version": v.model_version, "label": v.label, "score": v.score, "scores": v.scores,
            "evidence": v.evidence, "validation": v.validation or NOT_VALIDATED}


def verdict_per_model(verdicts: list[Verdict]) -> list[Verdict]:
    """The verdict shown for each model: the live version's result when there is one (a reprocessed job,
    or a shadow's opinion once that version is promoted), else the newest result that was a verdict
    when made. A shadow version's results never show while it is a shadow."""
    by_model: dict[str, list[Verdict]] = {}
    for v in verdicts:
        by_model.setdefault(v.model, []).append(v)
    out = []
    live: dict[str, str] | None = None
    for model, candidates in sorted(by_model.items()):
        shown = [v for v in candidates if v.kind != "shadow"]
        if len(candidates) > 1 or not shown:
            if live is None:
                from core.model_registry import live_versions

                live = live_versions()
            match = [v for v in candidates if v.model_version == live.get(model)]
            if match or shown:
                out.append(match[-1] if match else shown[-1])
        else:
            out.append(shown[0])
    return out


def history(job: Job) -> dict[str, list[dict[str, Any]]]:
    """Every result of a job, superseded and shadow ones included (``?versions=all``)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in job.results:
        out.setdefault(r.model, []).append({
            "model_version": r.model_version, "kind": r.kind, "label": r.label, "score": r.score,
            "scores": r.scores, "created_at": _iso(r.created_at), "validation": r.validation or NOT_VALIDATED})
    return out


def job_document(job: Job) -> dict[str, Any]:
    return document(
        job_id=job.id, owner=job.owner, status=job.status, attempts=job.attempts, models=job.models,
        media=media_fields(job.media), created_at=job.created_at, updated_at=job.updated_at,
        started_at=job.started_at, finished_at=job.finished_at,
        verdicts=[Verdict(r.model, r.model_version, r.label, r.score, r.scores, r.evidence, r.validation, r.kind)
                  for r in job.results],
        error=(job.error_code, job.error_message), callback_url=job.callback_url,
    )


def read_document(session: Session, job_id: str) -> dict[str, Any] | None:
    """A job's document by id (None if there is none), read with two prepared Core statements.

    Status polls are most of the web's requests: loading the ORM objects (identity map, a joined
    and a select-in load) cost ~3x what these plain row reads do."""
    if len(job_id) > 36 or "\x00" in job_id:  # PostgreSQL rejects NUL in text with an error, not a miss
        return None
    docs = _read_documents(session, "job_id", job_id)
    return docs[0] if docs else None


def batch_documents(session: Session, batch_id: str) -> dict[str, dict[str, Any]]:
    """Every job of a batch as its document, by job id: the same two statements for the whole batch,
    so a bulk client's verdicts cost one read, not one per job."""
    return {doc["id"]: doc for doc in _read_documents(session, "batch_id", batch_id)}


def _read_documents(session: Session, key: str, value: str) -> list[dict[str, Any]]:
    job_statement, results_statement = _document_statements(key)
    rows = session.execute(job_statement, {"key": value}).all()
    verdicts: dict[str, list[Verdict]] = {}
    for r in session.execute(results_statement, {"key": value}):
        verdicts.setdefault(r.job_id, []).append(Verdict(*r[1:]))
    return [document(job_id=row.id, owner=row.owner, status=row.status, attempts=row.attempts, models=row.models,
                     media=None if row.sha256 is None else {
                         "sha256": row.sha256, "format": row.format, "kind": row.kind, "size": row.size,
                         "width": row.width, "height": row.height},
                     created_at=row.created_at, updated_at=row.updated_at, started_at=row.started_at,
                     finished_at=row.finished_at, verdicts=verdicts.get(row.id, []),
                     error=(row.error_code, row.error_message), callback_url=row.callback_url)
            for row in rows]


@cache
def _document_statements(key: str) -> tuple[Select[Any], Select[Any]]:
    """Built once per key (``job_id``: one job; ``batch_id``: a batch's jobs) and run with a bound
    value (no per-call construction or cache-key work)."""
    jobs, media, results = (cast(Table, m.__table__) for m in (Job, Media, Result))
    job = (
        select(jobs.c.id, jobs.c.owner, jobs.c.status, jobs.c.attempts, jobs.c.models, jobs.c.created_at,
               jobs.c.updated_at, jobs.c.started_at, jobs.c.finished_at, jobs.c.error_code, jobs.c.error_message,
               jobs.c.callback_url, media.c.sha256, media.c.format, media.c.kind, media.c.size, media.c.width,
               media.c.height)
        .select_from(jobs.outerjoin(media, jobs.c.media_sha256 == media.c.sha256))
        .where((jobs.c.id if key == "job_id" else jobs.c.batch_id) == bindparam("key"))
    )
    columns = (results.c.job_id, results.c.model, results.c.model_version, results.c.label, results.c.score,
               results.c.scores, results.c.evidence, results.c.validation, results.c.kind)
    if key == "job_id":
        verdicts = select(*columns).where(results.c.job_id == bindparam("key"))
    else:
        verdicts = (select(*columns).select_from(results.join(jobs, results.c.job_id == jobs.c.id))
                    .where(jobs.c.batch_id == bindparam("key")))
    return job, verdicts.order_by(results.c.job_id, results.c.model, results.c.id)


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def refresh_cache(job_id: str) -> dict[str, Any] | None:
    """Re-read the job from the database and write it to the status cache."""
    with session_scope() as session:
        doc = read_document(session, job_id)
    if doc is None:
        return None
    status_cache.put(doc, announce=True)
    return doc


def insert_results(session: Session, rows: list[tuple[str, Verdict]]) -> None:
    """Insert results in one statement; a second insert for the same (job, model, version) is a no-op."""
    if not rows:
        return
    now = utcnow()
    values = [{"job_id": job_id, "model": v.model, "model_version": v.model_version, "label": v.label,
               "score": v.score, "scores": v.scores, "evidence": v.evidence, "validation": v.validation,
               "kind": v.kind, "created_at": now}
              for job_id, v in rows]
    session.execute(_insert_results(session.get_bind().dialect.name), values)


@cache
def _insert_results(dialect: str) -> Insert:
    """Built once: executed with a list of rows (one multi-row INSERT), not rebuilt per batch size."""
    table = cast(Table, Result.__table__)
    return upsert(dialect)(table).on_conflict_do_nothing(index_elements=["job_id", "model", "model_version"])


def fail(job_id: str, code: str, message: str) -> bool:
    """Any non-terminal job → failed with ``code`` (and its webhook pending if it asked for one)."""
    now = utcnow()
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.status in TERMINAL:
            return False
        result = session.execute(
            update(Job).where(Job.id == job_id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
            .values(status=JobStatus.FAILED, error_code=code, error_message=message[:2000], finished_at=now,
                    updated_at=now, lease_owner=None, lease_expires_at=None,
                    webhook_status="pending" if job.callback_url else None, webhook_updated_at=now)
        )
        changed = result.rowcount == 1  # type: ignore[attr-defined]
    if changed:
        refresh_cache(job_id)
    return changed


def stale_jobs(session: Session, status: str, older_than: timedelta, limit: int = 500) -> list[str]:
    """Ids of jobs sitting in ``status`` without an update for longer than ``older_than``."""
    cutoff = utcnow() - older_than
    rows = session.execute(
        select(Job.id).where(Job.status == status, Job.updated_at < cutoff).order_by(Job.updated_at).limit(limit)
    )
    return list(rows.scalars())


def touch(job_ids: list[str]) -> None:
    """Mark stale jobs as just looked at, so the next sweep does not resend them at once."""
    if job_ids:
        with session_scope() as session:
            session.execute(update(Job).where(Job.id.in_(job_ids)).values(updated_at=utcnow()))
