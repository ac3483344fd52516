"""Backups on the real services: PostgreSQL (pg_dump / pg_restore from postgresql-client) and the
S3 server over HTTP. Jobs, results and blobs made in a service-mode database are backed up with the
`deepscreen backup` commands, restored into a NEW database and a NEW bucket, and found again there
(every row compared, every blob's sha256 checked)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core import backup as bk
from core import backup_stores as stores
from tests.conftest import PG_ADMIN, jpeg_bytes

ROOT = Path(__file__).resolve().parents[2]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The `deepscreen backup` command group in a process of its own."""
    return subprocess.run([sys.executable, "-c", "from cli.backup import backup; backup(prog_name='deepscreen backup')",
                           *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)


@pytest.fixture()
def fresh_database() -> Iterator[str]:
    name = f"deepscreen_restore_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_ADMIN.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+psycopg://')}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _make_jobs(count: int) -> list[str]:
    """Media + blob + a finished job with a result for each, plus one queued job: ids returned."""
    from core.db import session_scope
    from core.models import Job, Media, Result
    from core.object_store import get_store, key_for

    store, ids = get_store(), []
    with session_scope() as session:
        for i in range(count):
            data = jpeg_bytes((32 + i, 24), seed=1000 + i + secrets.randbelow(10**6))
            sha = hashlib.sha256(data).hexdigest()
            store.put(key_for(sha), data, "image/jpeg")
            session.add(Media(sha256=sha, size=len(data), format="jpeg", kind="image", width=32 + i, height=24,
                              storage_key=key_for(sha)))
            job = Job(owner=f"tenant-{i % 2}", media_sha256=sha, models=["nsfw"], status="succeeded", attempts=1,
                      finished_at=datetime.now(UTC))
            session.add(job)
            session.flush()
            session.add(Result(job_id=job.id, model="nsfw", model_version="1", label="safe", score=0.01 * i,
                               scores={"nsfw": 0.01 * i}, evidence={"i": i}))
            ids.append(job.id)
        queued = Job(owner="tenant-q", models=["nsfw"], status="queued", text="only text")
        session.add(queued)
        session.flush()
        ids.append(queued.id)
    return ids


def _snapshot(url: str, ids: list[str]) -> dict[str, Any]:
    """Every column of the jobs, their results and media, from the database at URL."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from core.db import make_engine
    from core.models import Job, Media, Result

    def row(obj: Any) -> dict[str, Any]:
        return {c.key: getattr(obj, c.key) for c in obj.__table__.columns}

    engine = make_engine(url)
    try:
        with Session(engine) as session:
            jobs = {j.id: row(j) for j in session.scalars(select(Job).where(Job.id.in_(ids)))}
            results = sorted((row(r) for r in session.scalars(select(Result).where(Result.job_id.in_(ids)))),
                             key=lambda r: r["id"])
            shas = [j["media_sha256"] for j in jobs.values() if j["media_sha256"]]
            media = {m.sha256: row(m) for m in session.scalars(select(Media).where(Media.sha256.in_(shas)))}
    finally:
        engine.dispose()
    return {"jobs": jobs, "results": results, "media": media}


def test_backup_then_restore_into_a_new_database_and_bucket(service_env: dict[str, str], fresh_database: str,
                                                            tmp_path: Path) -> None:
    from core.object_store import S3Store

    ids = _make_jobs(6)
    before = _snapshot(service_env["DATABASE_URL"], ids)
    assert len(before["jobs"]) == 7 and len(before["results"]) == 6 and len(before["media"]) == 6

    out = tmp_path / "b1"
    done = _cli(service_env, "create", "--out", str(out))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "deepscreen-backup/1" and manifest["database"]["schema_revision"]
    assert manifest["database"]["row_counts"]["jobs"] >= 7 and manifest["database"]["row_counts"]["results"] >= 6
    assert manifest["database"]["sha256"] == bk.sha256_file(out / "database.dump")
    listed = {i["key"]: i for i in manifest["objects"]["items"]}
    for media in before["media"].values():
        item = listed[media["storage_key"]]
        assert item["sha256"] == media["sha256"] and item["size"] == media["size"]
    # Other tests share this database and remove some blobs on purpose (retention, media_missing): none
    # of this test's may be missing.
    mine = {media["storage_key"] for media in before["media"].values()}
    assert manifest["objects"]["count"] == len(listed) and not mine & set(manifest["missing_media"])
    assert _cli(service_env, "verify", str(out)).returncode == 0

    bucket = f"restored-{secrets.token_hex(4)}"
    done = _cli(service_env, "restore", str(out), "--database-url", fresh_database,
                "--storage-url", f"s3://{bucket}/elsewhere")
    assert done.returncode == 0, done.stderr + done.stdout
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["objects_copied"] == len(listed) and summary["objects_skipped"] == 0

    after = _snapshot(fresh_database, ids)
    assert after == before  # every job, result and media row, column by column
    target = S3Store(bucket, "elsewhere", service_env["S3_ENDPOINT_URL"], "us-east-1")
    for media in after["media"].values():
        assert hashlib.sha256(target.get(media["storage_key"])).hexdigest() == media["sha256"]

    # A second restore into the same (now populated) database is refused; objects never half-done.
    again = _cli(service_env, "restore", str(out), "--database-url", fresh_database,
                 "--storage-url", f"s3://{bucket}/elsewhere")
    assert again.returncode != 0 and "not empty" in again.stderr


class _Interrupted(stores.S3Blobs):
    """The service's store, cut off after a number of downloads (a crash mid-backup)."""

    budget = 2

    def download(self, key: str, path: Path) -> None:
        if self.budget <= 0:
            raise ConnectionError("store went away")
        self.budget -= 1
        super().download(key, path)


def test_an_interrupted_backup_resumes_and_the_next_one_links_unchanged_objects(
        service_env: dict[str, str], tmp_path: Path) -> None:
    _make_jobs(3)
    bucket, _, prefix = service_env["STORAGE_URL"].removeprefix("s3://").partition("/")
    endpoint = service_env["S3_ENDPOINT_URL"]
    source = stores.S3Blobs(bucket, prefix, endpoint, "us-east-1")
    total = sum(1 for _ in source.list())
    assert total >= 3

    out = tmp_path / "root" / "20260101T000000Z"
    with pytest.raises(ConnectionError):
        bk.create(out, service_env["DATABASE_URL"], _Interrupted(bucket, prefix, endpoint, "us-east-1"),
                  workers=1, log=lambda _: None)
    assert not (out / "manifest.json").exists()  # unfinished: no manifest
    journal = out / bk.PROGRESS
    lines = journal.read_text().splitlines()
    assert len(lines) == 2
    journal.write_text(lines[0] + "\n")  # the second copy finished but was never journalled (a crash)
    manifest = bk.create(out, service_env["DATABASE_URL"], source, workers=2, log=lambda _: None)
    assert manifest["objects"]["skipped"] == 2 and manifest["objects"]["copied"] == total - 2
    assert not bk.verify(out)

    second = tmp_path / "root" / "20260102T000000Z"
    manifest2 = bk.create(second, service_env["DATABASE_URL"], source, reuse=tmp_path / "root", log=lambda _: None)
    assert manifest2["objects"]["linked"] == total and manifest2["objects"]["copied"] == 0
    key = manifest2["objects"]["items"][0]["key"]
    assert (out / "objects" / key).stat().st_ino == (second / "objects" / key).stat().st_ino

    # A damaged copy is caught by verify, and restore refuses to start from it.
    victim = second / "objects" / key
    victim.unlink()  # break the hard link first: the first backup must stay sound
    victim.write_bytes(b"not the blob")
    problems = bk.verify(second)
    assert len(problems) == 1 and key in problems[0]
    assert not bk.verify(out)
    with pytest.raises(stores.BackupError, match="damaged"):
        bk.restore(second, service_env["DATABASE_URL"], source, log=lambda _: None)


def test_a_media_row_without_its_blob_is_reported(service_env: dict[str, str], tmp_path: Path) -> None:
    from core.db import session_scope
    from core.models import Media
    from core.object_store import key_for

    sha = secrets.token_hex(32)
    with session_scope() as session:
        session.add(Media(sha256=sha, size=10, format="jpeg", kind="image", storage_key=key_for(sha)))
    bucket, _, prefix = service_env["STORAGE_URL"].removeprefix("s3://").partition("/")
    manifest = bk.create(tmp_path / "b", service_env["DATABASE_URL"],
                         stores.S3Blobs(bucket, prefix, service_env["S3_ENDPOINT_URL"], "us-east-1"),
                         log=lambda _: None)
    assert key_for(sha) in manifest["missing_media"]


# ---- no services needed ----------------------------------------------------------------------------

def test_the_password_never_reaches_the_command_line() -> None:
    url, env = bk.libpq("postgresql+psycopg://deep:s%40cret@db.example:5433/deepscreen?sslmode=require")
    assert url == "postgresql://deep@db.example:5433/deepscreen?sslmode=require"
    assert env["PGPASSWORD"] == "s@cret"
    with pytest.raises(stores.BackupError, match="PostgreSQL"):
        bk.libpq("sqlite:///var/deepscreen.db")


def test_an_older_pg_dump_than_the_server_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "pg_dump"
    fake.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 14.11'\n")
    fake.chmod(0o755)
    assert bk.check_tool(str(fake), 14) == 14
    with pytest.raises(stores.BackupError, match="postgresql-client-16"):
        bk.check_tool(str(fake), 16)
    with pytest.raises(stores.BackupError, match="not installed"):
        bk.check_tool(str(tmp_path / "absent"), 16)


def test_installed_client_tools_match_the_test_server() -> None:
    """The tests' pg_dump/pg_restore (Debian's postgresql-client) can serve the tests' server."""
    with psycopg.connect(PG_ADMIN) as conn:
        server = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
    assert bk.check_tool("pg_dump", server) >= server
    assert bk.check_tool("pg_restore", server) >= server


def _fake_backup(root: Path, created: datetime) -> Path:
    path = root / created.strftime("%Y%m%dT%H%M%SZ")
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"format": bk.FORMAT, "created_at": created.isoformat()}))
    return path


def test_retention_keeps_the_newest_and_one_per_week(tmp_path: Path) -> None:
    start = datetime(2026, 9, 1, 3, 17, tzinfo=UTC)  # a Tuesday
    daily = [_fake_backup(tmp_path, start + timedelta(days=d)) for d in range(40)]
    unfinished = tmp_path / "20260915T031700Z-unfinished"
    unfinished.mkdir()
    os.utime(unfinished, (0, 0))
    deleted = bk.prune(tmp_path, keep_last=7, keep_weekly=4, log=lambda _: None)
    kept = sorted(p for p in tmp_path.iterdir())
    assert daily[-7:] == kept[-7:]
    weeks = {(d.isocalendar().year, d.isocalendar().week) for d in (start + timedelta(days=i) for i in range(40))}
    newest_weeks = sorted(weeks)[-4:]
    for year, week in newest_weeks:  # the newest backup of each of the last 4 weeks is kept
        in_week = [p for p, i in zip(daily, range(40), strict=True)
                   if (start + timedelta(days=i)).isocalendar()[:2] == (year, week)]
        assert in_week[-1] in kept
    assert unfinished in deleted and len(kept) < 40
    assert bk.prune(tmp_path, keep_last=7, keep_weekly=4, log=lambda _: None) == []  # stable


def test_backup_command_is_registered() -> None:
    from cli.main import main

    assert {"create", "restore", "verify", "prune"} <= set(main.commands["backup"].commands)  # type: ignore[attr-defined]
