"""Tables of the model lifecycle: which version of each model is live (the database decides, not the
newest folder), every change of state, reprocessing runs with their flips and failures."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, new_id, utcnow


class VersionState(enum.StrEnum):
    CANDIDATE = "candidate"  # built and registered, not serving
    SHADOW = "shadow"  # runs beside the live one on a sample; results stored, never the verdict
    LIVE = "live"  # the verdict (one per model)
    RETIRED = "retired"  # no longer served; its results stay queryable


class ModelVersion(Base):
    __tablename__ = "model_versions"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[str] = mapped_column(String(100), primary_key=True)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=VersionState.CANDIDATE)
    shadow_sample: Mapped[float] = mapped_column(Float, default=0.0)  # share of live traffic a shadow sees
    changed_by: Mapped[str] = mapped_column(String(200), default="system")
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    promoted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersionChange(Base):
    """The history: who moved which version from which state to which, and when."""

    __tablename__ = "model_version_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[str] = mapped_column(String(100))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    by: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    CANCELLED = "cancelled"
    DONE = "done"


class ReprocessRun(Base):
    """Re-screening stored uploads with one model version: chunked, rate-limited, resumable (the cursor
    and counters move in the same transaction as the results they count)."""

    __tablename__ = "reprocess_runs"
    __table_args__ = (Index("ix_reprocess_runs_model_status", "model", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    model: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(100))
    baseline_version: Mapped[str | None] = mapped_column(String(100))  # what the flips are measured against
    since: Mapped[datetime | None]
    only_positive: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.RUNNING)
    trigger: Mapped[str] = mapped_column(String(16), default="manual")  # manual | promotion | schedule
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    flipped: Mapped[int] = mapped_column(Integer, default=0)
    rate: Mapped[float] = mapped_column(Float, default=10.0)  # items per second, at most
    chunk: Mapped[int] = mapped_column(Integer, default=16)
    cursor_created_at: Mapped[datetime | None]
    cursor_id: Mapped[str | None] = mapped_column(String(36))
    lease_until: Mapped[datetime | None]  # one chunk at a time: whoever holds the lease works the run
    created_by: Mapped[str] = mapped_column(String(200), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class ReprocessFlip(Base):
    """A job whose label changed between the baseline version and the run's version."""

    __tablename__ = "reprocess_flips"

    run_id: Mapped[str] = mapped_column(ForeignKey("reprocess_runs.id", ondelete="CASCADE"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    old_label: Mapped[str] = mapped_column(String(64))
    new_label: Mapped[str] = mapped_column(String(64))
    old_score: Mapped[float | None] = mapped_column(Float)
    new_score: Mapped[float | None] = mapped_column(Float)


class ReprocessItem(Base):
    """Every job a run screened (or could not): makes the run idempotent per job and its delta
    histogram and failures reportable."""

    __tablename__ = "reprocess_items"

    run_id: Mapped[str] = mapped_column(ForeignKey("reprocess_runs.id", ondelete="CASCADE"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16))  # done | failed
    score_delta: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
