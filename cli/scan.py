"""``deepscreen scan PATH...``: screen files and folders through the API with ``deepscreen.client``.

Files go up ``--batch-size`` to a request (``POST /v1/batches``, each group then collected whole with
one ``?wait=`` long poll), ``--concurrency`` requests at a time; ``--batch-size 1`` uploads and waits
file by file (``POST /v1/jobs``). The progress bar advances when VERDICTS arrive (a group's together),
not when an upload is accepted. Prints a table, writes ``--json`` / ``--csv``, exits 1 if anything failed.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from deepscreen.client import Batch, Client, DeepscreenError, Job, JobError, WaitTimeout, media_files
from deepscreen.client.errors import ApiError

BATCH_FILES = 16  # files per upload request: a whole group is recorded in one transaction, collected in one poll
BATCH_BYTES = 8 * 1024 * 1024  # and at most this many bytes (a bigger file goes alone)


@dataclass
class Outcome:
    """What became of one file: its final job, or why there is none (refused upload, timeout)."""

    path: Path
    job: Job | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def status(self) -> str:
        if self.error_code == "timeout" and self.job is not None:
            return self.job.status  # still queued/running when we stopped waiting
        if self.job is not None:
            return self.job.status
        return "rejected"

    @property
    def ok(self) -> bool:
        return self.job is not None and self.job.succeeded and self.error_code is None


def display_name(path: Path) -> str:
    relative = os.path.relpath(path)
    return path.name if relative.startswith("..") else relative


def chunks(files: list[Path], batch_files: int, batch_bytes: int = BATCH_BYTES) -> list[list[Path]]:
    """Consecutive files in groups of at most ``batch_files`` and ``batch_bytes`` (a bigger file goes alone).

    Each group is one upload request: small enough to stay far below the server's body limit
    (MAX_UPLOAD_BYTES for the whole request) and to be sent again whole if the connection drops."""
    groups: list[list[Path]] = []
    size = 0
    for path in files:
        try:
            length = path.stat().st_size
        except OSError:
            length = 0  # unreadable: the upload says so, for this file alone
        if groups and len(groups[-1]) < batch_files and size + length <= batch_bytes:
            groups[-1].append(path)
            size += length
        else:
            groups.append([path])
            size = length
    return groups


def _settle(outcome: Outcome, job: Job) -> None:
    """Record a job that was waited for: a job still running when the wait ended is a timeout."""
    outcome.job = job
    if not job.final:
        outcome.error_code, outcome.error_message = "timeout", f"job {job.id} still {job.status} when the wait ended"
    elif job.error is not None:
        outcome.error_code, outcome.error_message = job.error.code, job.error.message


def _refuse(outcome: Outcome, exc: BaseException) -> None:
    if isinstance(exc, WaitTimeout):
        _settle(outcome, exc.job)
        outcome.error_message = str(exc)
    elif isinstance(exc, ApiError):
        outcome.error_code, outcome.error_message = exc.code, exc.message
    elif isinstance(exc, DeepscreenError):
        outcome.error_code, outcome.error_message = "client_error", str(exc)
    elif isinstance(exc, OSError):
        outcome.error_code, outcome.error_message = "unreadable", str(exc)
    else:
        raise exc


def screen_files(client: Client, files: list[Path], *, text: str | None, models: str | None, concurrency: int,
                 timeout: float, batch_size: int = BATCH_FILES,
                 on_verdict: Callable[[Outcome], None] = lambda _: None) -> list[Outcome]:
    """Upload ``concurrency`` requests at a time, wait for the verdicts, call ``on_verdict`` as each ends.

    Files go up ``batch_size`` to a request (``POST /v1/batches``; each group is then collected with
    one long poll), or one by one with ``batch_size`` 1. A group the server refuses as a whole (an
    unreadable file, a body too large) is sent again file by file, so each file gets its own answer.
    Waiting happens in its own pool, so slow jobs never hold up uploads; results come back in the
    order of ``files``.
    """
    deadline = time.monotonic() + timeout
    outcomes = {path: Outcome(path) for path in files}
    models = models or None

    def remaining() -> float:
        return max(1.0, deadline - time.monotonic())

    def upload(group: list[Path]) -> Job | Batch:
        if len(group) == 1:
            return client.submit_file(group[0], text=text, models=models)
        return client.submit_batch(group, text=text, models=models)

    def await_batch(batch: Batch) -> list[Job]:
        try:
            return client.wait_batch(batch, timeout=remaining())
        except WaitTimeout:
            return [client.get_job(job_id) for job_id in batch.job_ids]  # as they stand

    with ThreadPoolExecutor(concurrency, thread_name_prefix="upload") as uploads, \
            ThreadPoolExecutor(max(concurrency, 8), thread_name_prefix="wait") as waits:
        pending: dict[Future[Any], tuple[str, list[Path]]] = {
            uploads.submit(upload, group): ("upload", group) for group in chunks(files, batch_size)
        }

        def report(path: Path) -> None:
            on_verdict(outcomes[path])

        def settled(group: list[Path], jobs: list[Job]) -> None:
            for path, job in zip(group, jobs, strict=True):
                _settle(outcomes[path], job)
                report(path)

        def submitted(group: list[Path], batch: Batch) -> None:
            """Report the group's files refused at submission; wait for the rest together."""
            for item in batch.items:
                if item.job_id is None:
                    error = item.error or JobError("rejected", "the server refused this file")
                    outcome = outcomes[group[item.index]]
                    outcome.error_code, outcome.error_message = error.code, error.message
                    report(outcome.path)
            accepted = [group[item.index] for item in batch.items if item.job_id]
            if accepted:
                pending[waits.submit(await_batch, batch)] = ("wait", accepted)

        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                stage, group = pending.pop(future)
                exc = future.exception()
                if exc is not None and stage == "upload" and len(group) > 1:  # each file again, alone
                    pending.update({uploads.submit(upload, [path]): ("upload", [path]) for path in group})
                elif exc is not None:
                    for path in group:
                        _refuse(outcomes[path], exc)
                        report(path)
                elif isinstance(result := future.result(), Batch):
                    submitted(group, result)
                elif isinstance(result, list):
                    settled(group, result)
                elif stage == "upload" and not result.final:
                    pending[waits.submit(lambda job: client.wait(job, timeout=remaining()), result)] = ("wait", group)
                else:
                    settled(group, [result])
    return [outcomes[path] for path in files]


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_table(outcomes: list[Outcome]) -> None:
    names = [display_name(o.path) for o in outcomes]
    width = min(40, max([len("file"), *map(len, names)]))

    def fit(name: str) -> str:
        return name if len(name) <= width else "…" + name[-(width - 1):]

    click.echo(f"\n{'file':<{width}} {'status':<10} {'model':<10} {'version':<8} {'label':<12} {'score':>6}  note")
    for outcome, name in zip(outcomes, names, strict=True):
        short = fit(name)
        if outcome.job is None or not outcome.job.results:
            click.echo(f"{short:<{width}} {outcome.status:<10} {outcome.error_code or ''}")
            continue
        for model, result in outcome.job.results.items():
            note = "" if result.validated else "not validated on real data"
            click.echo(f"{short:<{width}} {outcome.status:<10} {model:<10} {result.model_version:<8} "
                       f"{result.label:<12} {_score(result.score):>6}  {note}")
            short = ""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    click.echo(f"\n{len(outcomes)} files: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))


def as_json(outcome: Outcome) -> dict[str, Any]:
    job = outcome.job
    return {
        "file": str(outcome.path), "job_id": job.id if job else None, "status": outcome.status,
        "sha256": (job.media or {}).get("sha256") if job else None,
        "error": {"code": outcome.error_code, "message": outcome.error_message} if outcome.error_code else None,
        "results": job.raw.get("results", {}) if job else {},
    }


CSV_FIELDS = ["file", "job_id", "status", "error_code", "model", "model_version", "label", "score", "validation"]


def csv_rows(outcome: Outcome) -> list[dict[str, Any]]:
    base = {"file": str(outcome.path), "job_id": outcome.job.id if outcome.job else "", "status": outcome.status,
            "error_code": outcome.error_code or ""}
    if outcome.job is None or not outcome.job.results:
        return [{**base, "model": "", "model_version": "", "label": "", "score": "", "validation": ""}]
    return [{**base, "model": model, "model_version": r.model_version, "label": r.label,
             "score": "" if r.score is None else repr(r.score), "validation": r.validation.get("status", "")}
            for model, r in outcome.job.results.items()]


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--url", default=lambda: os.environ.get("DEEPSCREEN_URL", "http://127.0.0.1:8000"),
              show_default="$DEEPSCREEN_URL or http://127.0.0.1:8000")
@click.option("--token", default=lambda: os.environ.get("DEEPSCREEN_TOKEN", ""), show_default="$DEEPSCREEN_TOKEN",
              help="A JWT (e.g. from `deepscreen token create`)")
@click.option("--api-key", default=lambda: os.environ.get("DEEPSCREEN_API_KEY", ""),
              show_default="$DEEPSCREEN_API_KEY", help="A ds_… key, traded for short-lived tokens")
@click.option("--models", default="", help="Comma list (default: the server's defaults)")
@click.option("--text", default=None, help="Caption/text to screen with each file")
@click.option("--concurrency", "-j", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Upload requests in flight at once")
@click.option("--batch-size", type=click.IntRange(1, 100), default=BATCH_FILES, show_default=True,
              help="Files per upload request (1: one request and one long poll per file)")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait for all verdicts")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every job (with results and evidence) as JSON ('-' for stdout)")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write one row per file and model as CSV")
@click.option("--progress/--no-progress", default=True, show_default=True)
def scan(paths: tuple[Path, ...], url: str, token: str, api_key: str, models: str, text: str | None,
         concurrency: int, batch_size: int, timeout: float, json_path: Path | None, csv_path: Path | None,
         progress: bool) -> None:
    """Screen files and folders (recursively: images and videos) and print each verdict."""
    if not token and not api_key:
        raise click.ClickException("no credentials: pass --token or --api-key "
                                   "(or set DEEPSCREEN_TOKEN / DEEPSCREEN_API_KEY)")
    files = media_files(paths)
    if not files:
        raise click.ClickException("no media files found (images: jpg png gif webp; videos: mp4 mov avi webm)")
    with Client(url, token=token or None, api_key=None if token else api_key, pool_size=max(16, concurrency * 2)) \
            as client, tqdm(total=len(files), desc="verdicts", unit="file", disable=not progress) as bar:
        outcomes = screen_files(client, files, text=text, models=models, concurrency=concurrency, timeout=timeout,
                                batch_size=batch_size, on_verdict=lambda _: bar.update(1))
    print_table(outcomes)
    if json_path is not None:
        document = json.dumps({"server": url, "items": [as_json(o) for o in outcomes]}, indent=2)
        if str(json_path) == "-":
            click.echo(document)
        else:
            json_path.write_text(document + "\n")
    if csv_path is not None:
        with csv_path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            writer.writeheader()
            for outcome in outcomes:
                writer.writerows(csv_rows(outcome))
    if not all(o.ok for o in outcomes):
        raise SystemExit(1)
