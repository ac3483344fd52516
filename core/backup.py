"""Backups: PostgreSQL's dump and a copy of the object store, tied together by one manifest.

A backup is a folder: ``database.dump`` (``pg_dump`` custom format), ``objects/<key>`` (every blob
of the store, keys relative to its prefix) and ``manifest.json``, written last, so a folder without
it is an unfinished backup that the next run into the same folder resumes. The dump and the
manifest's row counts, schema revision and media list come from one exported snapshot, so they
agree exactly; blobs are copied after the dump, so every media row of the dump has its blob unless
retention deleted it in between (the manifest lists any such key under ``missing_media``).

Object copies are resumable and cheap to repeat: a blob already in the folder with the same size and
sha256 is skipped, and one found unchanged in a previous backup (``reuse``) is hard-linked. Keys are
content addresses (``sha256/ab/<sha256>``), so each copy is also checked against its own name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse, urlunparse

import psycopg
from psycopg import sql

from core.backup_stores import BackupError, Blobs
from ml.manifest import sha256_file

FORMAT = "deepscreen-backup/1"
MANIFEST, DUMP, OBJECTS, PROGRESS = "manifest.json", "database.dump", "objects", "objects.progress.jsonl"
CONTENT_KEY = re.compile(r"(?:^|/)sha256/[0-9a-f]{2}/([0-9a-f]{64})$")
Log = Callable[[str], None]


# ---- PostgreSQL -----------------------------------------------------------------------------------

def libpq(url: str) -> tuple[str, dict[str, str]]:
    """A SQLAlchemy URL as a libpq URL without its password, and the environment that carries it
    (a password on pg_dump's command line would show in every process list)."""
    parsed = urlparse(url)
    if not parsed.scheme.startswith("postgresql"):
        raise BackupError(f"backups need PostgreSQL (DATABASE_URL is {parsed.scheme}://); in the embedded "
                          "mode stop `deepscreen up` and copy DATA_DIR instead")
    env = dict(os.environ)
    netloc = parsed.netloc
    if parsed.password is not None:
        env["PGPASSWORD"] = unquote(parsed.password)
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}@{host}"
    return urlunparse(("postgresql", netloc, parsed.path, "", parsed.query, "")), env


def tool_major(tool: str) -> int:
    """The major version of pg_dump / pg_restore ("pg_dump (PostgreSQL) 16.4" -> 16)."""
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BackupError(f"{tool} is not installed (Debian/Ubuntu: postgresql-client)") from exc
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    if not match:
        raise BackupError(f"cannot read the version of {tool}: {out.strip()!r}")
    return int(match.group(1))


def check_tool(tool: str, server_major: int) -> int:
    """pg_dump must be at least the server's major version (an older one refuses or loses data)."""
    client = tool_major(tool)
    if client < server_major:
        raise BackupError(f"{tool} {client} is older than the PostgreSQL {server_major} server: install "
                          f"postgresql-client-{server_major} (or point PG_DUMP/PG_RESTORE at it)")
    return client


def _scalar(conn: psycopg.Connection, query: Any) -> Any:
    """The first column of the first row (every query here returns exactly one)."""
    row = conn.execute(query).fetchone()
    if row is None:
        raise BackupError(f"no row from {query!r}")
    return row[0]


def _snapshot_facts(conn: psycopg.Connection) -> dict[str, Any]:
    """Row counts, Alembic revision and media keys, read inside the dump's snapshot."""
    tables = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
        "AND table_type = 'BASE TABLE' ORDER BY table_name")]
    counts = {t: _scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))) for t in tables}
    revision = None
    if "alembic_version" in tables:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        revision = row[0] if row else None
    media = [r[0] for r in conn.execute("SELECT storage_key FROM media")] if "media" in tables else []
    version = _scalar(conn, "SHOW server_version")
    return {"row_counts": counts, "schema_revision": revision, "media_keys": media, "server_version": version}


def _server_major(conn: psycopg.Connection) -> int:
    return int(_scalar(conn, "SHOW server_version_num")) // 10000


def _safe_path(root: Path, key: str) -> Path:
    path = (root / key).resolve()
    if root.resolve() not in path.parents:
        raise BackupError(f"object key {key!r} escapes the backup folder")
    return path


def _expected_sha(key: str) -> str | None:
    match = CONTENT_KEY.search(key)
    return match.group(1) if match else None


# ---- create -------------------------------------------------------------------------------------

def _previous(reuse: Path | None, out: Path) -> tuple[Path, dict[str, dict[str, Any]]] | None:
    """The backup to hard-link unchanged objects from: REUSE itself, or its newest complete child."""
    if reuse is None:
        return None
    candidates = [reuse] if (reuse / MANIFEST).is_file() else [
        d for d in complete_backups(reuse) if d.resolve() != out.resolve()]
    if not candidates:
        return None
    best = candidates[-1]
    items = json.loads((best / MANIFEST).read_text())["objects"]["items"]
    return best, {i["key"]: i for i in items}


def _copy_object(source: Blobs, out: Path, key: str, size: int, done: dict[str, dict[str, Any]],
                 previous: tuple[Path, dict[str, dict[str, Any]]] | None) -> tuple[str, dict[str, Any]]:
    """Copy one blob into OUT/objects; returns (how, entry), how in copied|skipped|linked."""
    target = _safe_path(out / OBJECTS, key)
    expected = _expected_sha(key)
    record = done.get(key)
    if target.is_file() and target.stat().st_size == size and (record or expected):
        # Kept when it hashes to what the journal recorded, or (a copy finished but not journalled
        # before a crash) to the content address in its own name.
        digest = sha256_file(target)
        if (record and record["size"] == size and digest == record["sha256"] and expected in (None, digest)) \
                or (record is None and digest == expected):
            return "skipped", {"key": key, "size": size, "sha256": digest}
    target.parent.mkdir(parents=True, exist_ok=True)
    if previous:
        old = previous[1].get(key)
        old_path = _safe_path(previous[0] / OBJECTS, key)
        if old and old["size"] == size and old_path.is_file() and old_path.stat().st_size == size:
            target.unlink(missing_ok=True)
            try:
                os.link(old_path, target)
            except OSError:  # another file system: copy instead
                shutil.copyfile(old_path, target)
            return "linked", {"key": key, "size": size, "sha256": old["sha256"]}
    part = target.with_name(target.name + ".part")
    source.download(key, part)
    digest = sha256_file(part)
    if part.stat().st_size != size:
        raise BackupError(f"{key}: got {part.stat().st_size} bytes, the store listed {size}")
    os.replace(part, target)
    return "copied", {"key": key, "size": size, "sha256": digest}


def create(out: Path, database_url: str, source: Blobs, *, reuse: Path | None = None, workers: int = 8,
           pg_dump: str | None = None, log: Log = print) -> dict[str, Any]:
    """Write a complete backup into OUT (resuming an unfinished one there) and return its manifest."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).exists():
        raise BackupError(f"{out} already holds a complete backup; choose a new folder")
    pg_dump = pg_dump or os.environ.get("PG_DUMP", "pg_dump")
    conninfo, env = libpq(database_url)
    started = datetime.now(UTC)
    with psycopg.connect(conninfo, password=env.get("PGPASSWORD")) as conn:
        # One repeatable-read transaction exports the snapshot pg_dump reads and the facts below.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        dump_major = check_tool(pg_dump, _server_major(conn))
        snapshot = _scalar(conn, "SELECT pg_export_snapshot()")
        part = out / (DUMP + ".part")
        log(f"dumping the database (pg_dump {dump_major}, custom format)")
        result = subprocess.run([pg_dump, "--format=custom", "--no-owner", "--no-privileges",
                                 f"--snapshot={snapshot}", f"--file={part}", f"--dbname={conninfo}"],
                                env=env, capture_output=True, text=True)
        if result.returncode:
            raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
        facts = _snapshot_facts(conn)
        conn.rollback()
    os.replace(part, out / DUMP)

    progress = out / PROGRESS
    done = {}
    if progress.exists():
        for line in progress.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                done[entry["key"]] = entry
    listing = sorted(source.list())
    previous = _previous(reuse, out)
    log(f"copying {len(listing)} objects" + (f" (unchanged ones linked from {previous[0]})" if previous else ""))
    tally = {"copied": 0, "skipped": 0, "linked": 0}
    items: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, progress.open("a") as journal:
        for how, entry in pool.map(lambda kv: _copy_object(source, out, kv[0], kv[1], done, previous), listing):
            tally[how] += 1
            items.append(entry)
            if how != "skipped":
                journal.write(json.dumps(entry) + "\n")
                journal.flush()
    keys = {i["key"] for i in items}
    mismatched = sorted(i["key"] for i in items if _expected_sha(i["key"]) not in (None, i["sha256"]))
    for key in mismatched:
        log(f"WARNING: {key} does not hash to its name: the stored blob is corrupt")
    missing = sorted(set(facts.pop("media_keys")) - keys)
    for key in missing:
        log(f"WARNING: media row's blob {key} is not in the store (expired or lost)")
    manifest = {
        "format": FORMAT,
        "created_at": started.isoformat(),
        "completed_at": datetime.now(UTC).isoformat(),
        "database": {"file": DUMP, "size": (out / DUMP).stat().st_size, "sha256": sha256_file(out / DUMP),
                     "pg_dump_major": dump_major, **facts},
        "objects": {"folder": OBJECTS, "count": len(items), "total_bytes": sum(i["size"] for i in items),
                    **tally, "items": items},
        "missing_media": missing,
        "mismatched_objects": mismatched,
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out / MANIFEST)
    progress.unlink(missing_ok=True)
    log(f"backup complete: {sum(facts['row_counts'].values())} rows in {len(facts['row_counts'])} tables, "
        f"{len(items)} objects ({tally['copied']} copied, {tally['linked']} linked, {tally['skipped']} kept)")
    return manifest


# ---- verify, restore, prune -----------------------------------------------------------------------

def load_manifest(backup: Path) -> dict[str, Any]:
    path = backup / MANIFEST
    if not path.is_file():
        raise BackupError(f"{backup} holds no {MANIFEST}: not a backup, or an unfinished one")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: unknown format {manifest.get('format')!r}")
    return manifest


def verify(backup: Path) -> list[str]:
    """Every file of the backup against its manifest; the problems found (empty when sound)."""
    manifest = load_manifest(backup)
    problems = []
    dump = backup / manifest["database"]["file"]
    if not dump.is_file() or sha256_file(dump) != manifest["database"]["sha256"]:
        problems.append(f"{dump.name}: missing or its sha256 differs from the manifest")
    for item in manifest["objects"]["items"]:
        path = _safe_path(backup / OBJECTS, item["key"])
        if not path.is_file() or path.stat().st_size != item["size"] or sha256_file(path) != item["sha256"]:
            problems.append(f"{item['key']}: missing, or its size or sha256 differs from the manifest")
    return problems


def restore(backup: Path, database_url: str, target: Blobs, *, workers: int = 8, pg_restore: str | None = None,
            log: Log = print) -> dict[str, Any]:
    """Restore into an EMPTY database and a store (resumable: objects already there are kept)."""
    manifest = load_manifest(backup)
    problems = verify(backup)
    if problems:
        raise BackupError("the backup is damaged, nothing was restored:\n  " + "\n  ".join(problems[:20]))
    pg_restore = pg_restore or os.environ.get("PG_RESTORE", "pg_restore")
    conninfo, env = libpq(database_url)
    with psycopg.connect(conninfo, password=env.get("PGPASSWORD"), autocommit=True) as conn:
        restore_major = tool_major(pg_restore)
        if restore_major < manifest["database"]["pg_dump_major"]:
            raise BackupError(f"pg_restore {restore_major} cannot read a dump made by pg_dump "
                              f"{manifest['database']['pg_dump_major']}: install a newer postgresql-client")
        used = _scalar(conn, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        if used:
            raise BackupError("the target database is not empty: restore into a new one (createdb)")
        log(f"restoring the database (pg_restore {restore_major})")
        result = subprocess.run([pg_restore, "--no-owner", "--no-privileges", "--exit-on-error",
                                 "--single-transaction", f"--dbname={conninfo}", str(backup / DUMP)],
                                env=env, capture_output=True, text=True)
        if result.returncode:
            raise BackupError(f"pg_restore failed: {result.stderr.strip()}")
        facts = _snapshot_facts(conn)
    expected = manifest["database"]
    if facts["row_counts"] != expected["row_counts"] or facts["schema_revision"] != expected["schema_revision"]:
        raise BackupError("the restored database differs from the manifest (row counts or schema revision)")

    target.ensure()
    items = manifest["objects"]["items"]
    log(f"restoring {len(items)} objects")

    def put(item: dict[str, Any]) -> str:
        if target.size(item["key"]) == item["size"]:
            return "skipped"
        target.upload(_safe_path(backup / OBJECTS, item["key"]), item["key"])
        return "copied"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        outcomes = list(pool.map(put, items))
    absent = [i["key"] for i in items if target.size(i["key"]) != i["size"]]
    if absent:
        raise BackupError(f"{len(absent)} objects are not in the target store after the copy: {absent[:5]}")
    summary = {"row_counts": facts["row_counts"], "schema_revision": facts["schema_revision"],
               "objects_copied": outcomes.count("copied"), "objects_skipped": outcomes.count("skipped")}
    log(f"restore complete: {sum(facts['row_counts'].values())} rows, {len(items)} objects "
        f"({summary['objects_copied']} copied, {summary['objects_skipped']} already there)")
    return summary


def complete_backups(root: Path) -> list[Path]:
    """ROOT's complete backups, oldest first (by the manifest's created_at)."""
    found = []
    for child in root.iterdir() if root.is_dir() else []:
        if (child / MANIFEST).is_file():
            found.append((json.loads((child / MANIFEST).read_text())["created_at"], child))
    return [path for _, path in sorted(found)]


def prune(root: Path, keep_last: int, keep_weekly: int, log: Log = print) -> list[Path]:
    """Retention: keep the KEEP_LAST newest backups and the newest of each of the KEEP_WEEKLY most
    recent ISO weeks that hold one; delete the rest, and unfinished folders older than the newest
    complete backup. Unchanged objects are hard links, so deleting a backup never breaks another."""
    backups = complete_backups(root)
    keep = set(backups[-keep_last:]) if keep_last > 0 else set()
    newest_per_week: dict[tuple[int, int], Path] = {}
    for path in backups:  # oldest first: the last one seen in a week is its newest
        week = datetime.fromisoformat(load_manifest(path)["created_at"]).isocalendar()
        newest_per_week[(week.year, week.week)] = path
    keep |= {newest_per_week[week] for week in sorted(newest_per_week)[-keep_weekly:]} if keep_weekly > 0 else set()
    deleted = [p for p in backups if p not in keep]
    if backups:
        newest = backups[-1].stat().st_mtime
        deleted += [c for c in root.iterdir() if c.is_dir() and not (c / MANIFEST).exists()
                    and c.stat().st_mtime < newest]
    for path in deleted:
        shutil.rmtree(path)
        log(f"deleted {path}")
    return deleted
