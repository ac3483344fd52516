"""``deepscreen scan FILE...``: submit through the API, poll with a progress bar, print a table."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
import requests
from tqdm import tqdm

TERMINAL = {"succeeded", "failed", "expired"}


def _check(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        raise click.ClickException(
            f"HTTP {response.status_code} {error.get('code', '')}: {error.get('message', response.text[:200])}"
        )
    return body


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", default=lambda: os.environ.get("DEEPSCREEN_URL", "http://127.0.0.1:8000"),
              show_default="$DEEPSCREEN_URL or http://127.0.0.1:8000")
@click.option("--token", default=lambda: os.environ.get("DEEPSCREEN_TOKEN", ""), show_default="$DEEPSCREEN_TOKEN")
@click.option("--models", default="", help="Comma list (default: the server's defaults)")
@click.option("--text", default=None, help="Caption/text to screen with each file")
@click.option("--timeout", type=float, default=300.0, show_default=True)
def scan(files: tuple[Path, ...], url: str, token: str, models: str, text: str | None, timeout: float) -> None:
    """Screen FILES and print each verdict."""
    if not token:
        raise click.ClickException("no token: pass --token or set DEEPSCREEN_TOKEN (`deepscreen token create`)")
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    base = url.rstrip("/")
    jobs: dict[str, dict] = {}
    for path in files:
        data = {k: v for k, v in (("models", models), ("text", text)) if v}
        with path.open("rb") as fh:
            body = _check(http.post(f"{base}/v1/jobs", files={"file": (path.name, fh)}, data=data, timeout=60))
        jobs[str(path)] = body
    deadline = time.monotonic() + timeout
    with tqdm(total=len(jobs), desc="screening", unit="file") as bar:
        bar.update(sum(1 for j in jobs.values() if j["status"] in TERMINAL))
        while any(j["status"] not in TERMINAL for j in jobs.values()) and time.monotonic() < deadline:
            time.sleep(0.5)
            for name, job in jobs.items():
                if job["status"] not in TERMINAL:
                    jobs[name] = _check(http.get(f"{base}{job['status_url']}", timeout=30))
                    if jobs[name]["status"] in TERMINAL:
                        bar.update(1)
    click.echo(f"\n{'file':<32} {'status':<10} {'model':<10} {'version':<8} {'label':<12} score")
    for name, job in jobs.items():
        short = Path(name).name[:31]
        if job["status"] != "succeeded":
            error = job.get("error") or {}
            click.echo(f"{short:<32} {job['status']:<10} {error.get('code', '') or ''}")
            continue
        for model, result in job["results"].items():
            score = "-" if result["score"] is None else f"{result['score']:.3f}"
            click.echo(f"{short:<32} {job['status']:<10} {model:<10} {result['model_version']:<8} "
                       f"{result['label']:<12} {score}")
            short = ""
    if any(j["status"] != "succeeded" for j in jobs.values()):
        raise SystemExit(1)
