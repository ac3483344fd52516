"""Running the service: ``up`` (embedded, all in one), or ``web`` / ``worker`` / ``beat`` separately."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

import click

from cli.settings_check import settings_or_exit
from core.settings import Settings, get_settings


def web_argv(settings: Settings, bind: str | None = None, workers: int | None = None) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "--bind", bind or settings.web_bind,
            "--workers", str(workers or settings.web_workers), "--timeout", "60", "--graceful-timeout", "20",
            "--access-logfile", "-", "web.app:create_app()"]


def worker_argv(settings: Settings, queues: str | None = None, concurrency: int | None = None,
                hostname: str = "worker@%h") -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
            "-Q", queues or f"{settings.inference_queue},{settings.text_queue}",
            "-c", str(concurrency or settings.worker_concurrency), "-n", hostname,
            "--loglevel", settings.log_level, "--without-gossip", "--without-mingle"]


def beat_argv(settings: Settings) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat", "--loglevel",
            settings.log_level, "-s", str(settings.data_dir / "celerybeat-schedule")]


def prepare_embedded(settings: Settings) -> None:
    """Create what the embedded mode needs: folders, a JWT secret, the schema."""
    from core.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.embedded:
        for sub in ("out", "processed", "control"):
            (settings.broker_folder / sub).mkdir(parents=True, exist_ok=True)
    secret_file = settings.data_dir / "jwt_secret"
    if not settings.jwt_secret and not settings.jwt_keys and not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(48))
        secret_file.chmod(0o600)
    upgrade(settings.database_url)


def _exec(argv: list[str]) -> None:
    os.execv(argv[0], argv)


@click.command()
@click.option("--bind", default=None, help="host:port (default WEB_BIND)")
@click.option("--workers", type=int, default=None, help="gunicorn workers (default WEB_WORKERS)")
def web(bind: str | None, workers: int | None) -> None:
    """Serve the API with gunicorn."""
    _exec(web_argv(settings_or_exit(), bind, workers))


@click.command()
@click.option("--queues", default=None, help="Comma list (default: inference and text queues)")
@click.option("--concurrency", "-c", type=int, default=None)
def worker(queues: str | None, concurrency: int | None) -> None:
    """Run a Celery worker (models load once per process, after fork)."""
    settings = settings_or_exit()
    if settings.embedded:
        for sub in ("out", "processed", "control"):
            (settings.broker_folder / sub).mkdir(parents=True, exist_ok=True)
    _exec(worker_argv(settings, queues, concurrency))


@click.command()
def beat() -> None:
    """Run celery beat (sweeps stuck and lost jobs)."""
    settings = settings_or_exit()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _exec(beat_argv(settings))


@click.command()
@click.option("--bind", default=None, help="host:port (default WEB_BIND)")
@click.option("--build-models/--no-build-models", default=True, help="Build missing default models first")
def up(bind: str | None, build_models: bool) -> None:
    """Embedded mode: web, worker and beat as child processes; Ctrl-C stops them all."""
    settings = settings_or_exit()
    prepare_embedded(settings)
    get_settings.cache_clear()
    settings = settings_or_exit()
    if build_models:
        from ml.build.builders import build_all

        build_all(settings.model_repository)  # existing versions are kept; only missing ones are built
    env = {**os.environ, "DATA_DIR": str(settings.data_dir), "MODEL_REPOSITORY": str(settings.model_repository)}
    bind = bind or settings.web_bind
    children = {
        "web": subprocess.Popen(web_argv(settings, bind), env=env),
        "worker": subprocess.Popen(worker_argv(settings), env=env),
        "beat": subprocess.Popen(beat_argv(settings), env=env),
    }
    from core.tokens import issue_token

    token = issue_token(settings, "dev", ("submit", "read", "admin"), ttl_seconds=7 * 24 * 3600)
    click.echo(f"\ndeepscreen is up at http://{bind}\n\nexport DEEPSCREEN_URL=http://{bind}\n"
               f"export DEEPSCREEN_TOKEN={token}\n\nCtrl-C stops web, worker and beat.\n")
    stopping = False

    def _stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping:
            for name, proc in children.items():
                if proc.poll() is not None:
                    click.echo(f"{name} exited with {proc.returncode}; stopping the rest", err=True)
                    stopping = True
            time.sleep(0.5)
    finally:
        for proc in children.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 20
        for proc in children.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        click.echo("stopped")
