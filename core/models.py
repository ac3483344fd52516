"""SQLAlchemy 2 typed models: media, jobs, results, API keys, batches.

PostgreSQL is the source of truth for every job; Redis only caches what is here.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, datetime: DateTime(timezone=True)}


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"


TERMINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.EXPIRED)


class Media(Base):
    """One uploaded blob, stored once under its sha256 whoever uploads it."""

    __tablename__ = "media"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(8))  # image | video
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]  # retention removed the blob; a new upload stores it again


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
        Index("ix_jobs_owner_created", "owner", "created_at"),
        Index("ix_jobs_status_updated", "status", "updated_at"),
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_claim", "status", "queue", "created_at"),
        Index("ix_jobs_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(200))
    media_sha256: Mapped[str | None] = mapped_column(ForeignKey("media.sha256"), index=True)
    text: Mapped[str | None] = mapped_column(Text)
    models: Mapped[list[str]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    callback_url: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The jobs table is the queue of record: a worker owns a running job through a lease it renews
    # while it works; a lease that runs out (the worker died) puts the job back (see core.job_queue).
    lease_owner: Mapped[str | None] = mapped_column(String(160))
    lease_expires_at: Mapped[datetime | None]
    available_at: Mapped[datetime | None]  # a queued job is not claimed before this (retry backoff)
    retries: Mapped[int] = mapped_column(Integer, default=0)  # transient re-queues (store / database down)
    webhook_status: Mapped[str | None] = mapped_column(String(16))  # pending | sent | failed
    webhook_updated_at: Mapped[datetime | None]
    request_id: Mapped[str | None] = mapped_column(String(64))  # the submitting request's id, for the logs
    notify_rescreen: Mapped[bool] = mapped_column(default=False)  # webhook job.rescreened when a verdict flips
    queue: Mapped[str] = mapped_column(String(64), default="inference")  # only workers of this queue claim it
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"), index=True)

    media: Mapped[Media | None] = relationship(lazy="joined")
    results: Mapped[list[Result]] = relationship(
        back_populates="job", lazy="selectin", order_by="(Result.model, Result.id)",
        cascade="all, delete-orphan"
    )


class Result(Base):
    """One model's verdict on one job; unique per (job, model, model_version) so redelivery cannot double-write."""

    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("job_id", "model", "model_version", name="uq_results_job_model_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(64))
    score: Mapped[float | None] = mapped_column(Float)
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The model version's validation block at the time it judged (what it was evaluated on, figures,
    # date — or "not validated on real data"), so no label is ever shown without its quality.
    validation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # verdict: screened as the live version; reprocess: re-screened by a reprocessing run; shadow: a
    # shadow version's opinion, stored for comparison and never shown as the verdict.
    kind: Mapped[str] = mapped_column(String(16), default="verdict")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="results")


class WorkerHeartbeat(Base):
    """What each live worker process serves (models, versions, provider, precision, batch size), so the
    web's /ready can report it without loading a model."""

    __tablename__ = "worker_heartbeats"

    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[str] = mapped_column(String(255), default="")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApiKey(Base):
    """An API key; only the sha256 of its secret part is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[str] = mapped_column(String(200), default="submit read")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    # A personal key (browser extension user): its own limit (flask-limiter syntax, e.g. "60/minute")
    # on every request its tokens make, and an end after which neither it nor its tokens work.
    rate_limit: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime | None]
    retention_days: Mapped[int | None] = mapped_column(Integer)  # overrides RETENTION_DAYS for its uploads


class Batch(Base):
    """Many submissions in one request (POST /v1/batches). Each accepted item is a job with this
    ``batch_id``; ``items`` keeps every item in order: its job id, or why it was refused."""

    __tablename__ = "batches"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key", name="uq_batches_owner_idempotency_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(Integer, default=0)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{index, job_id, error}]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
