"""``deepscreen scan PATH...``: screen files and folders through the API with ``deepscreen.client``.

Uploads run ``--concurrency`` at a time; each job is then waited for (``?wait=`` long polls where the
server has them, polling otherwise), and the progress bar advances when a VERDICT arrives, not when
an upload is accepted. Prints a table, writes ``--json`` / ``--csv``, exits 1 if anything failed.
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

from deepscreen.client import Client, DeepscreenError, Job, WaitTimeout, media_files
from deepscreen.client.errors import ApiError


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


def screen_files(client: Client, files: list[Path], *, text: str | None, models: str | None, concurrency: int,
                 timeout: float, on_verdict: Callable[[Outcome], None] = lambda _: None) -> list[Outcome]:
    """Upload ``concurrency`` files at a time, wait for each verdict, call ``on_verdict`` as each ends.

    Waiting happens in its own pool, so slow jobs never hold up uploads; results come back in the
    order of ``files``.
    """
    deadline = time.monotonic() + timeout
    outcomes = {path: Outcome(path) for path in files}

    def upload(path: Path) -> Job:
        return client.submit_file(path, text=text, models=models or None)

    def await_verdict(job: Job) -> Job:
        return client.wait(job, timeout=max(1.0, deadline - time.monotonic()))

    with ThreadPoolExecutor(concurrency, thread_name_prefix="upload") as uploads, \
            ThreadPoolExecutor(max(concurrency, 8), thread_name_prefix="wait") as waits:
        pending: dict[Future[Job], tuple[str, Path]] = {
            uploads.submit(upload, path): ("upload", path) for path in files
        }
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                stage, path = pending.pop(future)
                outcome = outcomes[path]
                try:
                    job = future.result()
                except WaitTimeout as exc:
                    outcome.job, outcome.error_code = exc.job, "timeout"
                    outcome.error_message = str(exc)
                except ApiError as exc:
                    outcome.error_code, outcome.error_message = exc.code, exc.message
                except DeepscreenError as exc:
                    outcome.error_code, outcome.error_message = "client_error", str(exc)
                except OSError as exc:
                    outcome.error_code, outcome.error_message = "unreadable", str(exc)
                else:
                    outcome.job = job
                    if stage == "upload" and not job.final:
                        pending[waits.submit(await_verdict, job)] = ("wait", path)
                        continue
                    if job.error is not None:
                        outcome.error_code, outcome.error_message = job.error.code, job.error.message
                on_verdict(outcome)
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
              help="Uploads in flight at once")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait for all verdicts")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every job (with results and evidence) as JSON ('-' for stdout)")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write one row per file and model as CSV")
@click.option("--progress/--no-progress", default=True, show_default=True)
def scan(paths: tuple[Path, ...], url: str, token: str, api_key: str, models: str, text: str | None,
         concurrency: int, timeout: float, json_path: Path | None, csv_path: Path | None, progress: bool) -> None:
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
                                on_verdict=lambda _: bar.update(1))
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
