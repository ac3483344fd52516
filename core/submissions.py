"""Accepting a submission: store the bytes, record the job, or answer at once from a known verdict.

The blob is written before the job row, and the row is committed before the task is sent, so a job
the broker sees always exists, and a job that exists always has its bytes (the beat sweep re-sends
any committed job the broker never got).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import session_scope
from core.jobs import job_document
from core.media_types import CONTENT_TYPES
from core.models import Job, JobStatus, Media, Result, utcnow
from core.object_store import ObjectStore, key_for


@dataclass(frozen=True)
class NewMedia:
    data: bytes
    sha256: str
    fmt: str
    kind: str
    width: int | None
    height: int | None


@dataclass(frozen=True)
class Submission:
    doc: dict[str, Any]
    needs_enqueue: bool  # a fresh queued job: send it to the broker
    replayed: bool  # an Idempotency-Key that was seen before


def _known_results(session: Session, sha256: str, text: str | None, wanted: dict[str, str]) -> list[Result]:
    """Results of an earlier succeeded job on the same bytes and text, at the live model versions."""
    query = (
        select(Result).join(Job)
        .where(Job.media_sha256 == sha256, Job.status == JobStatus.SUCCEEDED,
               Job.text.is_(None) if text is None else Job.text == text)
        .order_by(Result.created_at.desc())
    )
    found: dict[str, Result] = {}
    for result in session.scalars(query):
        if wanted.get(result.model) == result.model_version and result.model not in found:
            found[result.model] = result
        if len(found) == len(wanted):
            return list(found.values())
    return []


def _existing(session: Session, owner: str, idempotency_key: str) -> Job | None:
    return session.scalars(
        select(Job).where(Job.owner == owner, Job.idempotency_key == idempotency_key)
    ).first()


def submit(store: ObjectStore, owner: str, media: NewMedia, text: str | None, models: dict[str, str],
           idempotency_key: str | None = None, callback_url: str | None = None) -> Submission:
    """``models`` maps each requested model to its live version (for the known-verdict check)."""
    if idempotency_key:
        with session_scope() as session:
            job = _existing(session, owner, idempotency_key)
            if job is not None:
                return Submission(job_document(job), needs_enqueue=False, replayed=True)

    key = key_for(media.sha256)
    with session_scope() as session:
        stored = session.get(Media, media.sha256)
    if stored is None or not store.exists(key):
        store.put(key, media.data, CONTENT_TYPES[media.fmt])

    try:
        with session_scope() as session:
            if session.get(Media, media.sha256) is None:
                session.add(Media(sha256=media.sha256, size=len(media.data), format=media.fmt, kind=media.kind,
                                  width=media.width, height=media.height, storage_key=key))
    except IntegrityError:
        pass  # the same bytes were recorded by a concurrent upload

    try:
        with session_scope() as session:
            job = Job(owner=owner, media_sha256=media.sha256, text=text, models=list(models),
                      idempotency_key=idempotency_key, callback_url=callback_url)
            known = _known_results(session, media.sha256, text, models)
            if known:
                now = utcnow()
                job.status, job.started_at, job.finished_at = JobStatus.SUCCEEDED, now, now
                job.results = [
                    Result(model=r.model, model_version=r.model_version, label=r.label, score=r.score,
                           scores=r.scores, evidence={**r.evidence, "reused_from_job": r.job_id})
                    for r in known
                ]
            session.add(job)
            session.flush()
            session.refresh(job)
            doc = job_document(job)
    except IntegrityError:
        # Two requests raced on the same Idempotency-Key: the other one won.
        if idempotency_key:
            with session_scope() as session:
                job = _existing(session, owner, idempotency_key)
                if job is not None:
                    return Submission(job_document(job), needs_enqueue=False, replayed=True)
        raise
    return Submission(doc, needs_enqueue=doc["status"] == JobStatus.QUEUED, replayed=False)
