"""Reprocessing runs: re-screen stored uploads with one model version, chunk by chunk.

A run covers the jobs that model judged (their media still stored) with no result yet for the run's
version, in a scope (all, since a date, only past positives). Each chunk is claimed under a lease on
the run (one worker at a time), screened, and recorded in one transaction that inserts the results
(unique per job, model, version), the run's items and flips, and moves the cursor and counters: so a
run resumes after any process dies, counts nothing twice and re-screens nothing twice.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from core.db import session_scope, upsert
from core.job_queue import ClaimedJob
from core.jobs import Verdict, insert_results
from core.lifecycle_models import ReprocessFlip, ReprocessItem, ReprocessRun, RunStatus
from core.models import Job, JobStatus, Media, Result, utcnow
from core.settings import get_settings

LEASE = timedelta(seconds=120)


class RunError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _scope(run: ReprocessRun) -> Any:
    """The jobs a run covers: judged by its model, media still stored, finished, in scope."""
    judged = exists().where(Result.job_id == Job.id, Result.model == run.model, Result.kind != "shadow")
    conditions = [Job.status == JobStatus.SUCCEEDED, judged, Job.media_sha256.is_not(None),
                  exists().where(Media.sha256 == Job.media_sha256, Media.deleted_at.is_(None))]
    if run.since is not None:
        conditions.append(Job.created_at >= run.since)
    if run.only_positive and run.baseline_version:
        positive = positive_labels(run.model)
        conditions.append(exists().where(Result.job_id == Job.id, Result.model == run.model,
                                         Result.model_version == run.baseline_version,
                                         Result.label.in_(positive)))
    return and_(*conditions)


def positive_labels(model: str) -> list[str]:
    """The labels a model flags (its thresholds' names: fake, hateful, nsfw …), across its versions."""
    from ml.manifest import ModelError
    from ml.repository import ModelRepository

    repo = ModelRepository(get_settings().model_repository)
    labels: set[str] = set()
    for version in repo.versions(model):
        try:
            labels.update(repo.manifest(model, version).thresholds)
        except ModelError:
            continue
    return sorted(labels)


def _pending(run: ReprocessRun) -> Any:
    """In scope, not yet screened by this version (by this run or any other), not tried by this run."""
    return and_(
        _scope(run),
        ~exists().where(Result.job_id == Job.id, Result.model == run.model, Result.model_version == run.version),
        ~exists().where(ReprocessItem.run_id == run.id, ReprocessItem.job_id == Job.id),
    )


def describe(run: ReprocessRun) -> dict[str, Any]:
    processed = run.done + run.failed
    elapsed = ((run.finished_at or utcnow()) - _aware(run.created_at)).total_seconds()
    rate = processed / elapsed if elapsed > 0 else 0.0
    remaining = max(0, run.total - processed)
    return {
        "id": run.id, "model": run.model, "version": run.version, "baseline_version": run.baseline_version,
        "status": run.status, "trigger": run.trigger, "since": run.since.isoformat() if run.since else None,
        "only_positive": run.only_positive, "total": run.total, "done": run.done, "failed": run.failed,
        "flipped": run.flipped, "rate_limit": run.rate, "rate": round(rate, 2),
        "eta_seconds": round(remaining / rate, 1) if rate > 0 and run.status == RunStatus.RUNNING else None,
        "created_by": run.created_by, "created_at": _aware(run.created_at).isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


def start(model: str, version: str, by: str = "system", trigger: str = "manual", since: datetime | None = None,
          only_positive: bool = False, baseline: str | None = None, rate: float | None = None) -> dict[str, Any]:
    """A new run, or the unfinished one for the same model, version and scope (a cancelled run resumes)."""
    from core import model_registry

    settings = get_settings()
    with session_scope() as session:
        resumable = session.scalars(select(ReprocessRun).where(
            ReprocessRun.model == model, ReprocessRun.version == version,
            ReprocessRun.status.in_([RunStatus.RUNNING, RunStatus.CANCELLED]),
            ReprocessRun.only_positive == only_positive,
            ReprocessRun.since.is_(None) if since is None else ReprocessRun.since == since,
        ).order_by(ReprocessRun.created_at.desc())).first()
        if resumable is not None:
            resumable.status, resumable.updated_at, resumable.finished_at = RunStatus.RUNNING, utcnow(), None
            resumable.lease_until = None
            return describe(resumable)
        if baseline is None:
            history = [h for h in model_registry.history(model) if h["to"] == "retired" and h["from"] == "live"]
            baseline = history[-1]["version"] if history else None
        run = ReprocessRun(model=model, version=version, baseline_version=baseline, since=since,
                           only_positive=only_positive, trigger=trigger, created_by=by,
                           rate=rate or settings.reprocess_rate, chunk=settings.reprocess_chunk)
        session.add(run)
        session.flush()
        run.total = session.scalar(select(func.count()).select_from(Job).where(_pending(run))) or 0
        return describe(run)


def get(run_id: str) -> dict[str, Any]:
    with session_scope() as session:
        run = session.get(ReprocessRun, run_id) if len(run_id) <= 36 else None
        if run is None:
            raise RunError("not_found", f"no reprocessing run {run_id!r}")
        return describe(run)


def runs(limit: int = 50) -> list[dict[str, Any]]:
    with session_scope() as session:
        return [describe(r) for r in session.scalars(
            select(ReprocessRun).order_by(ReprocessRun.created_at.desc()).limit(limit))]


def cancel(run_id: str) -> dict[str, Any]:
    with session_scope() as session:
        run = session.get(ReprocessRun, run_id)
        if run is None:
            raise RunError("not_found", f"no reprocessing run {run_id!r}")
        if run.status == RunStatus.RUNNING:
            run.status, run.updated_at = RunStatus.CANCELLED, utcnow()
        return describe(run)


def claim_chunk(run_id: str) -> tuple[dict[str, Any], list[ClaimedJob]] | None:
    """Take the run's lease and its next chunk of jobs; None when the run is not ours to work now
    (cancelled, finished, or another worker holds it)."""
    now = utcnow()
    with session_scope() as session:
        taken = session.execute(
            update(ReprocessRun).where(
                ReprocessRun.id == run_id, ReprocessRun.status == RunStatus.RUNNING,
                or_(ReprocessRun.lease_until.is_(None), ReprocessRun.lease_until < now))
            .values(lease_until=now + LEASE, updated_at=now).returning(ReprocessRun.id)
            .execution_options(synchronize_session=False)
        ).first()
        if taken is None:
            return None
        run = session.get(ReprocessRun, run_id)
        assert run is not None
        query = select(Job).where(_pending(run)).order_by(Job.created_at, Job.id).limit(run.chunk)
        if run.cursor_created_at is not None and run.cursor_id is not None:
            query = query.where(tuple_(Job.created_at, Job.id) > tuple_(run.cursor_created_at, run.cursor_id))
        jobs = [_as_claimed(job, run.model) for job in session.scalars(query)]
        return describe(run), jobs


def _as_claimed(job: Job, model: str) -> ClaimedJob:
    media = job.media
    fields = ({"sha256": media.sha256, "format": media.format, "kind": media.kind, "size": media.size,
               "width": media.width, "height": media.height, "storage_key": media.storage_key} if media else None)
    return ClaimedJob(job.id, job.owner, job.text, [model], job.attempts, job.retries, job.created_at,
                      job.started_at or job.created_at, job.callback_url, fields, job.request_id)


def record_chunk(run_id: str, screened: list[tuple[ClaimedJob, Verdict | None, str | None]]) -> dict[str, Any]:
    """Results, items, flips, cursor and counters of one chunk in one transaction; releases the lease
    (and finishes the run when the chunk was empty). Returns the run and the jobs whose label flipped."""
    from dataclasses import replace

    from core.lifecycle_models import ModelVersion, VersionState

    now = utcnow()
    with session_scope() as session:
        run = session.get(ReprocessRun, run_id)
        assert run is not None
        # The database's word, not a cache: a run for the live version writes verdicts ("reprocess"),
        # one for any other version (a shadow on stored uploads) writes opinions that never show.
        state = session.scalar(select(ModelVersion.state).where(ModelVersion.name == run.model,
                                                                 ModelVersion.version == run.version))
        kind = "reprocess" if state == VersionState.LIVE else "shadow"
        screened = [(job, replace(verdict, kind=kind) if verdict is not None else None, error)
                    for job, verdict, error in screened]
        insert_results(session, [(job.id, verdict) for job, verdict, _ in screened if verdict is not None])
        baseline = _baseline(session, run, [job.id for job, _, _ in screened])
        insert = upsert(session.get_bind().dialect.name)
        flips: list[dict[str, Any]] = []
        items = []
        for job, verdict, error in screened:
            old = baseline.get(job.id)
            delta = (verdict.score - old.score) if verdict and old and verdict.score is not None \
                and old.score is not None else None
            items.append({"run_id": run.id, "job_id": job.id, "outcome": "done" if verdict else "failed",
                          "score_delta": delta, "error": error})
            if verdict is not None and old is not None and old.label != verdict.label:
                flips.append({"run_id": run.id, "job_id": job.id, "old_label": old.label, "new_label": verdict.label,
                              "old_score": old.score, "new_score": verdict.score})
        new_items = set(session.execute(insert(ReprocessItem).values(items).on_conflict_do_nothing()
                                        .returning(ReprocessItem.job_id)).scalars()) if items else set()
        new_flips = [f for f in flips if f["job_id"] in new_items]
        if new_flips:
            session.execute(insert(ReprocessFlip).values(new_flips).on_conflict_do_nothing())
        run.done += sum(1 for i in items if i["job_id"] in new_items and i["outcome"] == "done")
        run.failed += sum(1 for i in items if i["job_id"] in new_items and i["outcome"] == "failed")
        run.flipped += len(new_flips)
        if screened:
            last = max(screened, key=lambda s: (s[0].created_at, s[0].id))[0]
            run.cursor_created_at, run.cursor_id = last.created_at, last.id
        elif run.status == RunStatus.RUNNING:
            run.status, run.finished_at = RunStatus.DONE, now
        run.updated_at, run.lease_until = now, None
        return {"run": describe(run), "flipped": [f["job_id"] for f in new_flips], "kind": kind}


def _baseline(session: Session, run: ReprocessRun, job_ids: list[str]) -> dict[str, Result]:
    """Each job's verdict before this run: the baseline version's result, else its newest non-shadow one."""
    out: dict[str, Result] = {}
    if not job_ids:
        return out
    rows = session.scalars(select(Result).where(
        Result.job_id.in_(job_ids), Result.model == run.model, Result.model_version != run.version,
        Result.kind != "shadow").order_by(Result.created_at))
    for result in rows:  # oldest first: a later one replaces it, unless the kept one is the baseline's
        kept = out.get(result.job_id)
        if kept is None or kept.model_version != run.baseline_version:
            out[result.job_id] = result
    return out


def stalled(older_than: timedelta) -> list[str]:
    """Running runs nobody has worked for a while (their chunk message was lost): to be re-sent."""
    now = utcnow()
    with session_scope() as session:
        return list(session.scalars(select(ReprocessRun.id).where(
            ReprocessRun.status == RunStatus.RUNNING, ReprocessRun.updated_at < now - older_than,
            or_(ReprocessRun.lease_until.is_(None), ReprocessRun.lease_until < now))))


def flip_report(run_id: str) -> dict[str, Any]:
    """Which jobs changed label between the baseline and the run's version, with both scores and the
    delta; a summary of counts per old→new label and the score-delta histogram as numbers."""
    run = get(run_id)
    with session_scope() as session:
        flips = [{"job_id": f.job_id, "old_label": f.old_label, "new_label": f.new_label, "old_score": f.old_score,
                  "new_score": f.new_score,
                  "delta": None if f.old_score is None or f.new_score is None else f.new_score - f.old_score}
                 for f in session.scalars(select(ReprocessFlip).where(ReprocessFlip.run_id == run_id)
                                          .order_by(ReprocessFlip.job_id))]
        deltas = [float(d) for d in session.scalars(select(ReprocessItem.score_delta).where(
            ReprocessItem.run_id == run_id, ReprocessItem.score_delta.is_not(None))) if d is not None]
    pairs: dict[str, int] = {}
    for f in flips:
        key = f"{f['old_label']}->{f['new_label']}"
        pairs[key] = pairs.get(key, 0) + 1
    edges = [-1.0, -0.5, -0.25, -0.1, -0.05, 0.05, 0.1, 0.25, 0.5, 1.0]
    histogram = [{"from": lo, "to": hi, "count": sum(1 for d in deltas if lo <= d < hi or (hi == 1.0 and d == hi))}
                 for lo, hi in itertools.pairwise(edges)]
    return {"run": run, "summary": {"flips": len(flips), "by_labels": pairs, "compared": len(deltas),
                                    "score_delta_histogram": histogram},
            "flips": flips}


def flip_csv(report: dict[str, Any]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, ["job_id", "old_label", "new_label", "old_score", "new_score", "delta"])
    writer.writeheader()
    writer.writerows(report["flips"])
    return out.getvalue()
