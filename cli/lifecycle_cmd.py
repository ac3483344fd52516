"""Model lifecycle from the command line: version states (promote, shadow, retire), comparisons, and
reprocessing runs with a progress bar. Works on DATABASE_URL directly, like `deepscreen apikey`."""

from __future__ import annotations

import getpass
import json
import time
from datetime import UTC, datetime
from typing import Any

import click

from cli.settings_check import settings_or_exit


def _ref(value: str) -> tuple[str, str]:
    name, sep, version = value.partition("@")
    if not sep or not name or not version:
        raise click.BadParameter("give NAME@VERSION, e.g. deepfake@2")
    return name, version


def _send_chunk(run_id: str) -> None:
    from workers.celery_app import TASK_REPROCESS, make_celery

    make_celery(settings_or_exit()).send_task(TASK_REPROCESS, args=[run_id], ignore_result=True)


def _change(ref: str, state: str, sample: float = 0.0, reprocess_after: bool = False) -> None:
    from core import model_registry, reprocess
    from core.model_registry import RegistryError
    from ml.repository import ModelRepository

    settings = settings_or_exit()
    name, version = _ref(ref)
    repo = ModelRepository(settings.model_repository)
    if version not in repo.versions(name):
        raise click.ClickException(f"the model repository has no {name}@{version}")
    model_registry.sync(repo)  # registers versions built since the last look
    try:
        changed = model_registry.change(name, version, state, f"cli:{getpass.getuser()}", sample)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{name}@{version}: {changed['from']} -> {changed['to']}")
    if reprocess_after:
        run = reprocess.start(name, version, by=f"cli:{getpass.getuser()}", trigger="promotion")
        _send_chunk(run["id"])
        click.echo(f"reprocessing run {run['id']}: {run['total']} stored uploads to re-screen")


@click.command("promote")
@click.argument("ref")
@click.option("--reprocess/--no-reprocess", default=None, help="Re-screen stored uploads (REPROCESS_ON_PROMOTE)")
def promote(ref: str, reprocess: bool | None) -> None:
    """Make NAME@VERSION live (the live one is retired); workers follow within seconds."""
    _change(ref, "live", reprocess_after=settings_or_exit().reprocess_on_promote if reprocess is None else reprocess)


@click.command("shadow")
@click.argument("ref")
@click.option("--sample", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.1, show_default=True)
def shadow(ref: str, sample: float) -> None:
    """Run NAME@VERSION beside the live one on a share of live traffic; never the verdict."""
    _change(ref, "shadow", sample)


@click.command("retire")
@click.argument("ref")
def retire(ref: str) -> None:
    """Stop serving NAME@VERSION (its results stay queryable)."""
    _change(ref, "retired")


@click.command("compare")
@click.argument("name")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True)
def compare(name: str, a: str, b: str, as_json: bool) -> None:
    """Agreement, flips and score deltas of two versions on the jobs both judged."""
    from core.model_compare import compare as run

    report = run(name, a, b)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{name}: v{a} vs v{b} on {report['jobs']} jobs judged by both")
    if report["jobs"]:
        click.echo(f"agreement {report['agreement']:.1%}")
        for pair, count in sorted(report["flips"].items(), key=lambda kv: -kv[1]):
            click.echo(f"  {pair:<24} {count}")
        click.echo("score delta quantiles (b - a): " + ", ".join(
            f"p{int(float(q) * 100)} {v:+.3f}" for q, v in report["score_delta_quantiles"].items() if v is not None))


@click.group("reprocess")
def reprocess_group() -> None:
    """Re-screen stored uploads with a model version (runs are resumable and rate-limited)."""


@reprocess_group.command("start")
@click.option("--model", required=True)
@click.option("--version", default=None, help="Default: the live version")
@click.option("--since", default=None, help="Only uploads from this date (ISO 8601)")
@click.option("--only-positive", is_flag=True, help="Only uploads the previous version flagged")
@click.option("--rate", type=float, default=None, help="Jobs per second at most (REPROCESS_RATE)")
def start(model: str, version: str | None, since: str | None, only_positive: bool, rate: float | None) -> None:
    """Start a run (or resume the unfinished one with the same scope)."""
    from core import model_registry, reprocess
    from ml.repository import ModelRepository

    settings = settings_or_exit()
    repo = ModelRepository(settings.model_repository)
    version = version or model_registry.live_versions(repo).get(model)
    if version is None or version not in repo.versions(model):
        raise click.ClickException(f"no version {version!r} of model {model!r}")
    when = None
    if since:
        when = datetime.fromisoformat(since)
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
    run = reprocess.start(model, version, by=f"cli:{getpass.getuser()}", since=when, only_positive=only_positive,
                          rate=rate)
    _send_chunk(run["id"])
    click.echo(f"run {run['id']}: {model}@{version}, {run['total']} uploads to re-screen")


@reprocess_group.command("status")
@click.argument("run_id", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.option("--follow", is_flag=True, help="A progress bar until the run ends")
def status(run_id: str | None, as_json: bool, follow: bool) -> None:
    """One run (progress: total, done, failed, flipped, rate, ETA) or the latest runs."""
    from core import reprocess

    if run_id is None:
        rows = reprocess.runs()
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        for r in rows if not as_json else []:
            click.echo(f"{r['id']}  {r['model']}@{r['version']:<4} {r['status']:<9} "
                       f"{r['done'] + r['failed']}/{r['total']} flipped {r['flipped']}")
        return
    try:
        run = reprocess.get(run_id)
    except reprocess.RunError as exc:
        raise click.ClickException(str(exc)) from exc
    if follow and not as_json:
        run = _follow(run_id, run)
    if as_json:
        click.echo(json.dumps(run, indent=2))
        return
    click.echo(_line(run))


def _line(run: dict[str, Any]) -> str:
    eta = f", ETA {run['eta_seconds']:.0f} s" if run.get("eta_seconds") is not None else ""
    return (f"{run['id']} {run['model']}@{run['version']} {run['status']}: {run['done']} done, {run['failed']} failed, "
            f"{run['flipped']} flipped of {run['total']} ({run['rate']:.1f}/s{eta})")


def _follow(run_id: str, run: dict[str, Any]) -> dict[str, Any]:
    from tqdm import tqdm

    from core import reprocess

    with tqdm(total=run["total"], unit="job", desc=f"{run['model']}@{run['version']}") as bar:
        while True:
            run = reprocess.get(run_id)
            bar.total = max(run["total"], run["done"] + run["failed"])
            bar.n = run["done"] + run["failed"]
            bar.set_postfix(failed=run["failed"], flipped=run["flipped"])
            bar.refresh()
            if run["status"] != "running":
                return run
            time.sleep(1)


@reprocess_group.command("cancel")
@click.argument("run_id")
def cancel(run_id: str) -> None:
    """Stop a run; `reprocess start` with the same scope resumes it."""
    from core import reprocess

    try:
        click.echo(_line(reprocess.cancel(run_id)))
    except reprocess.RunError as exc:
        raise click.ClickException(str(exc)) from exc


@reprocess_group.command("report")
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "summary"]), default="summary")
def report(run_id: str, fmt: str) -> None:
    """The flip report: which uploads changed label, both scores and the delta."""
    from core import reprocess

    try:
        data = reprocess.flip_report(run_id)
    except reprocess.RunError as exc:
        raise click.ClickException(str(exc)) from exc
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
    elif fmt == "csv":
        click.echo(reprocess.flip_csv(data), nl=False)
    else:
        click.echo(_line(data["run"]))
        for pair, count in sorted(data["summary"]["by_labels"].items()):
            click.echo(f"  {pair:<24} {count}")
        for row in data["summary"]["score_delta_histogram"]:
            click.echo(f"  delta [{row['from']:+.2f}, {row['to']:+.2f}) {row['count']}")
