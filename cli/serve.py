"""Running the service: ``up`` (embedded, all in one), or ``web`` / ``worker`` / ``beat`` separately."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path

import click

from cli.settings_check import settings_or_exit
from core.settings import Settings, get_settings


def web_argv(settings: Settings, bind: str | None = None, workers: int | None = None) -> list[str]:
    # gthread: a long poll (?wait=) holds a thread, not a process (web/long_poll.py); the app reads
    # WEB_THREADS too, to keep a quarter of the threads free of long polls. The worker class is gthread
    # with gunicorn's own error answers (414, 431, 400) in the API's error shape (web/gunicorn_worker.py).
    return [sys.executable, "-m", "gunicorn", "--bind", bind or settings.web_bind,
            "--workers", str(workers or settings.web_workers),
            "--worker-class", "web.gunicorn_worker.JsonErrorThreadWorker",
            "--threads", str(settings.web_threads), "--timeout", "60", "--graceful-timeout", "20",
            "web.app:create_app()"]  # the app writes the access log itself (JSON, with request ids)


def worker_argv(settings: Settings, queues: str | None = None, concurrency: int | None = None,
                hostname: str = "worker@%h", pool: str = "prefork") -> list[str]:
    """An inference worker. ``prefork`` (service mode): one parent, ``concurrency`` pool processes.
    ``solo`` (embedded mode): the process runs tasks itself; ``deepscreen up`` runs one per core."""
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
            "-Q", queues or f"{settings.inference_queue},{settings.text_queue},{settings.reprocess_queue}",
            "--pool", pool,
            "-c", str(concurrency or settings.inference_processes), "-n", hostname,
            "--loglevel", settings.log_level, "--without-gossip", "--without-mingle"]


def control_argv(settings: Settings) -> list[str]:
    """Beat plus the control queue (sweeps, webhooks) in one small process, apart from inference.

    Run exactly one. Threads, not a prefork pool: the work is database and HTTP calls, and a thread
    pool has no shared inbound-queue lock that a killed child could leave held.
    """
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--beat",
            "-s", str(settings.data_dir / "celerybeat-schedule"), "-Q", settings.control_queue,
            "--pool", "threads", "-c", "4", "-n", "control@%h", "--loglevel", settings.log_level,
            "--without-gossip", "--without-mingle"]


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
@click.option("--concurrency", "-c", type=int, default=None, help="Processes (default: cores // ONNX threads)")
@click.option("--pool", type=click.Choice(["prefork", "solo"]), default="prefork", show_default=True)
def worker(queues: str | None, concurrency: int | None, pool: str) -> None:
    """Run an inference worker (models load once per process, after fork)."""
    settings = settings_or_exit()
    check_providers(settings)
    if settings.embedded:
        for sub in ("out", "processed", "control"):
            (settings.broker_folder / sub).mkdir(parents=True, exist_ok=True)
    if settings.worker_metrics_port and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # The pool processes write their metrics here; the worker's own /metrics adds them up.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="deepscreen-metrics-")
    _exec(worker_argv(settings, queues, concurrency, pool=pool))


@click.command()
def beat() -> None:
    """Run beat and the control queue (repairs, webhooks). Exactly one per deployment."""
    settings = settings_or_exit()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _exec(control_argv(settings))


def check_providers(settings: Settings) -> None:
    """Refuse to start a worker whose ONNX_PROVIDERS cannot be had (CUDA alone without CUDA)."""
    from ml.runtime import ProviderError, choose_providers

    try:
        choose_providers(settings.onnx_providers)
    except ProviderError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.option("--bind", default=None, help="host:port (default WEB_BIND)")
@click.option("--build-models/--no-build-models", default=True, help="Build missing default models first")
def up(bind: str | None, build_models: bool) -> None:
    """Embedded mode: web, one inference worker per core, and beat + control, supervised; Ctrl-C stops all."""
    from cli.supervisor import Supervisor

    settings = settings_or_exit()
    check_providers(settings)
    prepare_embedded(settings)
    get_settings.cache_clear()
    settings = settings_or_exit()
    if build_models:
        from ml.build.builders import build_all

        build_all(settings.model_repository)  # existing versions are kept; only missing ones are built
    env = {**os.environ, "DATA_DIR": str(settings.data_dir), "MODEL_REPOSITORY": str(settings.model_repository)}
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(prepare_metrics_dir(settings)))
    env["WORKER_METRICS_PORT"] = "0"  # one host, one folder: the web's /metrics already shows every process
    bind = bind or settings.web_bind
    supervisor = Supervisor(env)
    supervisor.add("web", web_argv(settings, bind))
    # One solo worker per process slot, each its own broker consumer: nothing is shared between them
    # that a SIGKILL could leave locked, and the supervisor restarts whichever dies.
    for index in range(settings.inference_processes):
        supervisor.add(f"inference-{index}",
                       worker_argv(settings, concurrency=1, hostname=f"inference-{index}@%h", pool="solo"))
    supervisor.add("control", control_argv(settings))
    from core.tokens import issue_token

    token = issue_token(settings, "dev", ("submit", "read", "admin"), ttl_seconds=7 * 24 * 3600)
    click.echo(f"\ndeepscreen is up at http://{bind}\n\nexport DEEPSCREEN_URL=http://{bind}\n"
               f"export DEEPSCREEN_TOKEN={token}\n\nCtrl-C stops web, workers and beat.\n")
    supervisor.run()
    click.echo("stopped")


def prepare_metrics_dir(settings: Settings) -> Path:
    """One PROMETHEUS_MULTIPROC_DIR for every process of the embedded mode (the web's /metrics reads
    them all), emptied at start: stale files of dead processes would count twice."""
    folder = settings.data_dir / "metrics"
    if folder.exists():
        for stale in folder.glob("*.db"):
            stale.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder
