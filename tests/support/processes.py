"""Real processes the tests drive: the S3 server, Celery workers, gunicorn, nginx."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class MotoServer:
    """moto's S3 server over real HTTP, stoppable and restartable on the same port (outage tests)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(self._up, 30, what="the S3 server")

    def _up(self) -> bool:
        try:
            return requests.get(self.url, timeout=1).status_code < 500
        except requests.RequestException:
            return False

    def stop(self) -> None:
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
                                     start_new_session=True)

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
    def __init__(self, env: dict[str, str], log_path: Path, concurrency: int = 1, queues: str = "inference,text",
                 name: str = "test") -> None:
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

    def child_pids(self) -> list[int]:
        """The prefork pool's processes (the ones that run tasks)."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]


class Gunicorn(Service):
    def __init__(self, env: dict[str, str], log_path: Path, port: int, workers: int = 2) -> None:
        argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
                "--timeout", "60", "web.app:create_app()"]
        super().__init__(argv, env, log_path)
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        super().start()
        wait_for(self._up, 60, what="gunicorn")

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"gunicorn died:\n{self.log()[-3000:]}")
        try:
            return requests.get(f"{self.url}/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False
