"""Real processes the tests drive: the S3 server, Celery workers, gunicorn, nginx."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL it when the test process dies (a killed or timed-out pytest
    must not leave workers behind that consume the next run's messages)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def pid_alive(pid: int) -> bool:
    """Running (not a zombie waiting for its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class MotoServer:
    """moto's S3 server (a real HTTP server in its own process), reached through a relay that
    ``stop()`` cuts and ``start()`` restores, so an outage keeps the stored objects."""

    def __init__(self, server_port: int, public_port: int) -> None:
        self.server_port = server_port
        self.url = f"http://127.0.0.1:{public_port}"
        self._relay = TcpProxy(public_port, ("127.0.0.1", server_port))
        self._proc: subprocess.Popen | None = None

    def launch(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.server_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.start()

    def start(self) -> None:
        self._relay.start()
        wait_for(self._up, 30, what="the S3 server")

    def _up(self) -> bool:
        try:
            return requests.get(self.url, timeout=1).status_code < 500
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """Cut the network path: clients get connection refused."""
        self._relay.stop()

    def shutdown(self) -> None:
        self._relay.stop()
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)
        self._proc = None


class Service:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv, self.env, self.log_path = argv, {**os.environ, **env}, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=die_with_parent)

    def wait_http(self, url: str, timeout: float, what: str, healthy: int | None = 200) -> None:
        """Wait until ``url`` answers (with ``healthy`` when given); fail at once if the process died."""

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{what} died:\n{self.log()[-3000:]}")
            try:
                status = requests.get(url, timeout=1).status_code
            except requests.RequestException:
                return False
            return healthy is None or status == healthy

        wait_for(up, timeout, what=what)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
        self.proc = None


class Worker(Service):
    def __init__(self, env: dict[str, str], log_path: Path, concurrency: int = 1,
                 queues: str = "inference,text,control,reprocess", name: str = "test") -> None:
        argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", queues,
                "-c", str(concurrency), "-n", f"{name}-{os.getpid()}@%h", "--loglevel", "INFO",
                "--without-gossip", "--without-mingle", "--without-heartbeat"]
        super().__init__(argv, env, log_path)

    def start(self) -> None:
        offset = len(self.log())
        super().start()
        wait_for(lambda: " ready." in self.log()[offset:] or self._died(), 60, what="the Celery worker")
        if self._died():
            raise RuntimeError(f"worker died at start:\n{self.log()[-3000:]}")

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def pool_pid(self, timeout: float = 30) -> int:
        """The prefork pool's one process (waits while the parent replaces a killed one)."""
        def alive() -> int | None:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"the worker parent died:\n{self.log()[-3000:]}")
            pids = [pid for pid in self.child_pids() if pid_alive(pid)]
            return pids[0] if len(pids) == 1 else None

        return wait_for(alive, timeout, interval=0.05, what="the worker's pool process")

    def child_pids(self) -> list[int]:
        """The prefork pool's processes (the ones that run tasks)."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]


class Control(Worker):
    """`deepscreen beat`: beat plus the control queue (sweeps, webhooks), threads pool."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        super().__init__(env, folder / "control.log", concurrency=4, queues=env.get("CONTROL_QUEUE", "control"),
                         name="control")
        self.argv += ["--pool", "threads", "--beat", "-s", str(folder / "celerybeat-schedule")]


class Gunicorn(Service):
    """gunicorn as `deepscreen web` runs it: gthread workers (a long poll holds a thread) answering
    gunicorn's own errors as JSON (web/gunicorn_worker.py); the app is
    told the thread count (WEB_THREADS) it sizes its long polls by. ``worker_class="sync"`` gives one
    request per process (a test that needs to know which process answers)."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int, workers: int = 2, threads: int = 128,
                 worker_class: str = "web.gunicorn_worker.JsonErrorThreadWorker") -> None:
        threads = 1 if worker_class == "sync" else threads
        argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
                "--worker-class", worker_class, "--threads", str(threads), "--timeout", "60",
                "web.app:create_app()"]
        super().__init__(argv, {"WEB_THREADS": str(threads), **env}, log_path)
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        super().start()
        self.wait_http(f"{self.url}/health", 60, "gunicorn")


class Nginx(Service):
    """The real nginx binary, unprivileged, configured from nginx/nginx.conf.template."""

    def __init__(self, prefix: Path, port: int, upstream: str) -> None:
        from string import Template

        prefix.mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        template = Template((ROOT / "nginx" / "nginx.conf.template").read_text())
        conf.write_text(template.substitute(LISTEN_PORT=port, UPSTREAM=upstream, PREFIX=str(prefix)))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise RuntimeError("nginx is not installed: `make test` installs it (scripts/ensure_services.sh)")
        # As root, nginx's workers would run as nobody and could not spool bodies into pytest's 0700 tmp dirs.
        directives = "daemon off; user root;" if os.geteuid() == 0 else "daemon off;"
        argv = [binary, "-e", "stderr", "-p", str(prefix), "-c", str(conf), "-g", directives]
        super().__init__(argv, {}, prefix / "nginx.out")
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        super().start()
        self.wait_http(f"{self.url}/health", 20, "nginx", healthy=None)  # any answer: the upstream may be down


def answers_200(url: str) -> bool:
    """The URL answers 200 now (not: refuses, times out or says it is not ready)."""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def embedded_env(data_dir: Path, model_repo: Path, bind: str) -> dict[str, str]:
    """The environment of a user who set nothing but where to keep data: every service URL unset."""
    from core.settings import Settings

    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(DATA_DIR=str(data_dir), MODEL_REPOSITORY=str(model_repo), WEB_BIND=bind, DEFAULT_MODELS="nsfw")
    return env
