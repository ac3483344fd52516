"""The model lifecycle's database side on real PostgreSQL: registry states, reprocessing runs
(scope, idempotence, flips, cancel and resume), retention and drift. The worker side runs in
tests/e2e/test_lifecycle.py with real processes."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from core import drift, model_registry, reprocess, retention
from core.db import session_scope
from core.job_queue import ClaimedJob
from core.jobs import Verdict, insert_results, job_document
from core.lifecycle_models import ModelVersion, ModelVersionChange, ReprocessItem, ReprocessRun
from core.model_registry import RegistryError
from core.models import Job, JobStatus, Media, Result, utcnow
from core.object_store import get_store
from core.submissions import NewMedia, submit
from ml.repository import ModelRepository
from tests.conftest import jpeg_bytes
from tests.support.environment import apply_env


@pytest.fixture()
def two_versions(service_env: dict[str, str], model_repo: Path, tmp_path: Path) -> Iterator[ModelRepository]:
    """A repository of its own holding nsfw/1 and later nsfw/2, an empty registry and no results."""
    root = tmp_path / "repo"
    shutil.copytree(Path(model_repo) / "nsfw" / "1", root / "nsfw" / "1")
    with session_scope() as session:
        for table in (ReprocessRun, ModelVersionChange, ModelVersion):
            session.execute(delete(table))
        session.execute(delete(Result))
        session.execute(update(Job).where(Job.status.in_(["queued", "running"])).values(status="failed"))
    with apply_env({"MODEL_REPOSITORY": str(root)}):
        yield ModelRepository(root)


def add_version(repo: ModelRepository, version: str, threshold: float) -> None:
    """A new version of nsfw: the same network with another threshold (a real, servable version)."""
    from ml.manifest import Manifest

    target = repo.root / "nsfw" / version
    shutil.copytree(repo.root / "nsfw" / "1", target)
    manifest = Manifest.load(target)
    manifest.version, manifest.directory, manifest.thresholds = version, target, {"nsfw": threshold}
    manifest.save()


def job_with_verdict(label: str, score: float, version: str = "1") -> str:
    data = jpeg_bytes((40, 30), seed=int(uuid.uuid4().int % 10_000_000))
    media = NewMedia(data, hashlib.sha256(data).hexdigest(), "jpeg", "image", 40, 30)
    job_id = submit(get_store(), "lifecycle", media, None, {"nsfw": version}).doc["id"]
    with session_scope() as session:
        insert_results(session, [(job_id, Verdict("nsfw", version, label, score, {}, {}))])
        session.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.SUCCEEDED, finished_at=utcnow()))
    return job_id


def test_the_database_decides_what_is_live(two_versions: ModelRepository) -> None:
    assert model_registry.live_versions(two_versions) == {"nsfw": "1"}  # a fresh install serves what it built
    add_version(two_versions, "2", 0.5)
    model_registry.forget()
    assert model_registry.live_versions(two_versions) == {"nsfw": "1"}  # a new folder is a candidate, not live
    assert {v["version"]: v["state"] for v in model_registry.versions("nsfw")} == {"1": "live", "2": "candidate"}
    changed = model_registry.change("nsfw", "2", "live", "alice")
    assert changed["previous_live"] == "1"
    assert model_registry.live_versions() == {"nsfw": "2"}
    assert {v["version"]: v["state"] for v in model_registry.versions("nsfw")} == {"1": "retired", "2": "live"}
    with pytest.raises(RegistryError) as refused:
        model_registry.change("nsfw", "2", "retired", "alice")
    assert refused.value.code == "live_version"
    with pytest.raises(RegistryError):
        model_registry.change("nsfw", "1", "shadow", "alice", sample=0.0)
    model_registry.change("nsfw", "1", "shadow", "bob", sample=0.25)
    assert model_registry.serving()["nsfw"].shadows == {"1": 0.25}
    history = model_registry.history("nsfw")
    assert [(h["version"], h["to"], h["by"]) for h in history][-3:] == [
        ("1", "retired", "alice"), ("2", "live", "alice"), ("1", "shadow", "bob")]


def test_a_run_covers_exactly_the_jobs_lacking_the_new_version(two_versions: ModelRepository) -> None:
    model_registry.live_versions(two_versions)
    old = [job_with_verdict("safe", 0.2), job_with_verdict("nsfw", 0.9), job_with_verdict("safe", 0.1)]
    already = job_with_verdict("safe", 0.3)
    with session_scope() as session:  # one upload was screened by v2 already: not again
        insert_results(session, [(already, Verdict("nsfw", "2", "safe", 0.3, {}, {}))])
    add_version(two_versions, "2", 0.15)
    model_registry.forget()
    model_registry.live_versions(two_versions)
    model_registry.change("nsfw", "2", "live", "alice")
    run = reprocess.start("nsfw", "2", by="alice")
    assert run["baseline_version"] == "1" and run["total"] == 3
    claimed = reprocess.claim_chunk(run["id"])
    assert claimed is not None and reprocess.claim_chunk(run["id"]) is None  # one worker at a time
    _, chunk = claimed
    assert {j.id for j in chunk} == set(old)
    screened = [(j, Verdict("nsfw", "2", "nsfw" if j.id != old[2] else "safe", 0.5, {}, {}, kind="reprocess"), None)
                for j in chunk]
    recorded = reprocess.record_chunk(run["id"], screened)
    assert sorted(recorded["flipped"]) == sorted([old[0]])  # safe -> nsfw; the nsfw one stayed nsfw
    again = reprocess.record_chunk(run["id"], screened)  # a chunk recorded twice (redelivery) counts once
    assert again["run"]["done"] == 3 and again["flipped"] == []
    assert reprocess.claim_chunk(run["id"]) is not None
    finished = reprocess.record_chunk(run["id"], [])
    assert finished["run"]["status"] == "done" and finished["run"]["flipped"] == 1
    report = reprocess.flip_report(run["id"])
    assert report["flips"][0]["job_id"] == old[0] and report["summary"]["by_labels"] == {"safe->nsfw": 1}
    assert "job_id,old_label,new_label" in reprocess.flip_csv(report)
    with session_scope() as session:  # the job now reads as the live version's verdict, the old one kept
        job = session.get(Job, old[0])
        assert job is not None and job_document(job)["results"]["nsfw"]["model_version"] == "2"
        assert len(job.results) == 2


def test_cancel_then_start_resumes_and_scope_filters(two_versions: ModelRepository) -> None:
    model_registry.live_versions(two_versions)
    flagged = job_with_verdict("nsfw", 0.95)
    job_with_verdict("safe", 0.05)
    add_version(two_versions, "2", 0.5)
    model_registry.forget()
    model_registry.live_versions(two_versions)
    model_registry.change("nsfw", "2", "live", "alice")
    positive = reprocess.start("nsfw", "2", only_positive=True)
    assert positive["total"] == 1
    cancelled = reprocess.cancel(positive["id"])
    assert cancelled["status"] == "cancelled" and reprocess.claim_chunk(positive["id"]) is None
    resumed = reprocess.start("nsfw", "2", only_positive=True)
    assert resumed["id"] == positive["id"] and resumed["status"] == "running"
    _, chunk = reprocess.claim_chunk(resumed["id"])  # type: ignore[misc]
    assert [j.id for j in chunk] == [flagged]
    later = reprocess.start("nsfw", "2", since=utcnow() + timedelta(days=1))
    assert later["total"] == 0


def test_retention_expires_jobs_and_deletes_blobs_keeping_the_verdict(two_versions: ModelRepository) -> None:
    model_registry.live_versions(two_versions)
    job_id = job_with_verdict("safe", 0.2)
    store = get_store()
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.media is not None
        key, sha = job.media.storage_key, job.media.sha256
        session.execute(update(Job).where(Job.id == job_id).values(finished_at=utcnow() - timedelta(days=40)))
    assert store.exists(key)
    counts = retention.expire(store, days=30, keep_verdicts=True)
    assert counts["expired"] >= 1 and counts["blobs_deleted"] >= 1
    assert not store.exists(key)
    summary = retention.summary(job_id)
    assert summary == {"status": "expired", "terminal": True, "media_deleted": True,
                       "results": {"nsfw": {"version": "1", "label": "safe", "score": 0.2}}}
    # The same bytes uploaded again are stored again.
    with session_scope() as session:
        media = session.get(Media, sha)
        assert media is not None and media.deleted_at is not None


def test_psi_is_zero_for_the_same_scores_and_grows_with_a_shift() -> None:
    base = [i / 100 for i in range(100)]
    assert drift.psi(base, base) == pytest.approx(0.0, abs=1e-9)
    shifted = [min(0.999, s + 0.3) for s in base]
    assert drift.psi(base, shifted) > 0.25 > drift.psi(base, [s * 0.98 for s in base])


def test_reprocess_items_make_runs_idempotent(two_versions: ModelRepository) -> None:
    model_registry.live_versions(two_versions)
    job_id = job_with_verdict("safe", 0.2)
    add_version(two_versions, "2", 0.5)
    model_registry.forget()
    model_registry.live_versions(two_versions)
    run = reprocess.start("nsfw", "2")
    _, chunk = reprocess.claim_chunk(run["id"])  # type: ignore[misc]
    failing = [(chunk[0], None, "corrupt_image:damaged")]
    reprocess.record_chunk(run["id"], failing)
    with session_scope() as session:
        items = session.scalars(select(ReprocessItem).where(ReprocessItem.run_id == run["id"])).all()
        assert [(i.job_id, i.outcome) for i in items] == [(job_id, "failed")]
    assert reprocess.get(run["id"])["failed"] == 1
    assert isinstance(chunk[0], ClaimedJob) and chunk[0].models == ["nsfw"]
