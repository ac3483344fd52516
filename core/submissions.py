"""Accepting a submission: store the bytes, record the job, or answer at once from a known verdict.

The blob is written before the job row, and the row is committed before the task is sent, so a job
the broker sees always exists, and a job that exists always has its bytes (the beat sweep re-sends
any committed job the broker never got).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from sqlalchemy import Insert, Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import session_scope, upsert
from core.jobs import Verdict, document, insert_results, job_document
from core.logs import request_id_var
from core.media_types import CONTENT_TYPES
from core.models import Job, JobStatus, Media, Result, new_id, utcnow
from core.object_store import ObjectStore, key_for
from core.settings import get_settings


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
        .where(Job.media_sha256 == sha256, Job.status == JobStatus.SUCCEEDED, Result.kind != "shadow",
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


# Statements built once per process and executed with parameters: a statement built per request with
# .values(...) costs SQLAlchemy a fresh cache key over every value (~1 ms of CPU per POST, profiled).
_STORED = select(Media.sha256).where(Media.sha256.in_(bindparam("shas", expanding=True)),
                                     Media.deleted_at.is_(None))
_INSERT_JOB = insert(cast(Table, Job.__table__))


@cache
def _insert_media(dialect: str) -> Insert:
    """INSERT media, or bring back a row that retention marked deleted (content-addressed: a race is harmless)."""
    table = cast(Table, Media.__table__)
    return upsert(dialect)(table).on_conflict_do_update(index_elements=["sha256"], set_={"deleted_at": None})


def _existing(session: Session, owner: str, idempotency_key: str) -> Job | None:
    return session.scalars(
        select(Job).where(Job.owner == owner, Job.idempotency_key == idempotency_key)
    ).first()


def submit(store: ObjectStore, owner: str, media: NewMedia, text: str | None, models: dict[str, str],
           idempotency_key: str | None = None, callback_url: str | None = None,
           batch_id: str | None = None, notify_rescreen: bool = False) -> Submission:
    """``models`` maps each requested model to its live version (for the known-verdict check);
    ``batch_id`` names the batch (core.batches) the job is an item of.

    Few round trips: one transaction reads the media row (and known verdicts only when the bytes were
    seen before), PUTs the blob for new content, and inserts the media row and the job.
    """
    if idempotency_key:
        with session_scope() as session:
            job = _existing(session, owner, idempotency_key)
            if job is not None:
                return Submission(job_document(job), needs_enqueue=False, replayed=True)
    try:
        return _record(store, owner, [media], text, models, idempotency_key, callback_url, batch_id,
                       notify_rescreen)[0]
    except IntegrityError:
        # Two requests raced on the same Idempotency-Key: the other one won.
        if idempotency_key:
            with session_scope() as session:
                existing = _existing(session, owner, idempotency_key)
                if existing is not None:
                    return Submission(job_document(existing), needs_enqueue=False, replayed=True)
        raise


def submit_many(store: ObjectStore, owner: str, medias: list[NewMedia], text: str | None, models: dict[str, str],
                callback_url: str | None = None, batch_id: str | None = None) -> list[Submission]:
    """The files of one batch as ``submit`` makes each (in order, one Submission per media), in one
    transaction: one read of which contents are stored, the new blobs PUT, one INSERT for the new
    media rows and one for all the jobs: a few statements for a batch instead of a few per file."""
    return _record(store, owner, medias, text, models, None, callback_url, batch_id, False) if medias else []


def _record(store: ObjectStore, owner: str, medias: list[NewMedia], text: str | None, models: dict[str, str],
            idempotency_key: str | None, callback_url: str | None, batch_id: str | None,
            notify_rescreen: bool) -> list[Submission]:
    now = utcnow()
    queue, request_id = get_settings().inference_queue, request_id_var.get()
    out: list[Submission] = []
    # One transaction (one pooled connection): which contents are known? store the new ones, then the
    # job rows. Each blob is written before the row that points at it is committed.
    with session_scope() as session:
        wanted = list({m.sha256 for m in medias})
        stored = set(session.scalars(_STORED, {"shas": wanted}))
        known = {sha: _known_results(session, sha, text, models) for sha in stored}
        new = {m.sha256: m for m in medias if m.sha256 not in stored}
        # content-addressed: a PUT racing another upload of the same bytes is harmless
        store.put_many([(key_for(m.sha256), m.data, CONTENT_TYPES[m.fmt]) for m in new.values()])
        if new:
            session.execute(_insert_media(session.get_bind().dialect.name), [dict(
                sha256=m.sha256, size=len(m.data), format=m.fmt, kind=m.kind, width=m.width, height=m.height,
                storage_key=key_for(m.sha256), created_at=now) for m in new.values()])
        jobs, results = [], []
        for media in medias:
            job_id = new_id()
            verdicts = [Verdict(r.model, r.model_version, r.label, r.score, r.scores,
                                {**r.evidence, "reused_from_job": r.job_id}, r.validation)
                        for r in known.get(media.sha256, [])]
            status = JobStatus.SUCCEEDED if verdicts else JobStatus.QUEUED
            finished = now if verdicts else None
            jobs.append(dict(
                id=job_id, owner=owner, media_sha256=media.sha256, text=text, models=list(models),
                idempotency_key=idempotency_key, callback_url=callback_url, status=status, attempts=0, retries=0,
                request_id=request_id, queue=queue, batch_id=batch_id, notify_rescreen=notify_rescreen,
                created_at=now, updated_at=now, started_at=finished, finished_at=finished,
                webhook_status="pending" if verdicts and callback_url else None,
            ))
            results += [(job_id, v) for v in verdicts]
            doc = document(job_id=job_id, owner=owner, status=status, attempts=0, models=list(models),
                           media={"sha256": media.sha256, "format": media.fmt, "kind": media.kind,
                                  "size": len(media.data), "width": media.width, "height": media.height},
                           created_at=now, updated_at=now, started_at=finished, finished_at=finished,
                           verdicts=verdicts, error=None, callback_url=callback_url)
            out.append(Submission(doc, needs_enqueue=status == JobStatus.QUEUED, replayed=False))
        session.execute(_INSERT_JOB, jobs)
        insert_results(session, results)
    return out
