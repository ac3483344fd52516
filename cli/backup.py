"""``deepscreen backup``: create, verify, restore and prune backups (docs/operations.md)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.settings_check import settings_or_exit
from core.backup import create, prune, restore, verify
from core.backup_stores import BackupError, blobs_for


@click.group()
def backup() -> None:
    """Backups: pg_dump plus a copy of the object store, tied by a manifest."""


@backup.command("create")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for this backup (a new one; an unfinished backup there is resumed)")
@click.option("--reuse", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A previous backup, or a folder of backups (the newest is used): unchanged objects are hard-linked")
@click.option("--workers", default=8, show_default=True, help="Parallel object copies")
def create_cmd(out: Path, reuse: Path | None, workers: int) -> None:
    """Dump DATABASE_URL and copy every object of STORAGE_URL into OUT."""
    settings = settings_or_exit()
    try:
        source = blobs_for(settings.storage_url, settings.s3_endpoint_url, settings.s3_region)
        create(out, settings.database_url, source, reuse=reuse, workers=workers, log=click.echo)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc


@backup.command("verify")
@click.argument("backup_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def verify_cmd(backup_dir: Path) -> None:
    """Check every file of a backup against its manifest (sizes and sha256)."""
    try:
        problems = verify(backup_dir)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    if problems:
        raise click.ClickException("damaged backup:\n  " + "\n  ".join(problems))
    click.echo(f"{backup_dir}: sound")


@backup.command("restore")
@click.argument("backup_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--database-url", default=None, help="Target database, empty (default: DATABASE_URL)")
@click.option("--storage-url", default=None, help="Target store, e.g. s3://new-bucket (default: STORAGE_URL)")
@click.option("--workers", default=8, show_default=True, help="Parallel object copies")
def restore_cmd(backup_dir: Path, database_url: str | None, storage_url: str | None, workers: int) -> None:
    """Restore BACKUP_DIR into an empty database and a store (run `deepscreen db upgrade` after)."""
    settings = settings_or_exit()
    try:
        target = blobs_for(storage_url or settings.storage_url, settings.s3_endpoint_url, settings.s3_region)
        summary = restore(backup_dir, database_url or settings.database_url, target, workers=workers,
                          log=click.echo)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(summary, sort_keys=True))


@backup.command("prune")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--keep-last", default=7, show_default=True, help="Newest backups kept")
@click.option("--keep-weekly", default=4, show_default=True, help="Weeks whose newest backup is kept")
def prune_cmd(root: Path, keep_last: int, keep_weekly: int) -> None:
    """Apply the retention policy to the backups in ROOT."""
    deleted = prune(root, keep_last, keep_weekly, log=click.echo)
    click.echo(f"{len(deleted)} deleted")
