"""The two ways deepscreen runs, started for real as a user starts them, with each process group named
for CPU accounting (bench/proc_cpu.py).

- embedded: ``deepscreen up`` (SQLite, the filesystem broker, local blobs; gunicorn, one solo Celery
  worker per inference process, control + beat, supervised).
- service: ``deepscreen web`` (gunicorn), ``deepscreen worker`` (prefork), ``deepscreen beat`` against
  a PostgreSQL database made here on the shared server (BENCH_PG_ADMIN_URL) and dropped after, a
  redis-server of its own on a free port (so its CPU time is ours alone; BENCH_REDIS_URL uses an
  existing one instead), and moto's S3 server.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.common import ROOT, cores
from bench.proc_cpu import Finder, Proc, tree
from bench.round_trips import Counters, service_counters

QUIET = {"LOG_LEVEL": "WARNING", "RATE_LIMIT_DEFAULT": "1000000/minute", "RATE_LIMIT_SUBMIT": "1000000/minute"}
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CLI = [sys.executable, "-m", "cli.main"]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    mode: str
    url: str
    token: str
    folder: Path
    groups: dict[str, Finder] = field(default_factory=dict)  # measured, project + its servers
    others: dict[str, Finder] = field(default_factory=dict)  # measured, but not the project's (S3, …)
    inference_processes: int = 1
    counters: Counters | None = None  # calls to Redis / PostgreSQL / S3 so far (service mode)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _base_env(model: str, repo: Path, folder: Path, extra: dict[str, str]) -> dict[str, str]:
    from core.settings import Settings

    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(DATA_DIR=str(folder / "data"), MODEL_REPOSITORY=str(repo), DEFAULT_MODELS=model, **QUIET)
    env.update(extra)
    return env


def _expected_processes(env: dict[str, str]) -> int:
    concurrency = int(env.get("WORKER_CONCURRENCY") or 0)
    threads = int(env.get("ONNX_INTRA_OP_THREADS") or 1)
    return concurrency or max(1, cores() // max(1, threads))


def _matching(root: int, needle: str) -> Finder:
    def find(snap: dict[int, Proc]) -> list[int]:
        return [p for p in tree(snap, [root]) if needle in snap[p].cmdline]
    return find


def _tree_of(root: int) -> Finder:
    return lambda snap: tree(snap, [root])


def _wait_ready(stack: Stack, procs: list[subprocess.Popen], log: Path, timeout: float = 240) -> None:
    """/ready answers 200 and every inference process has loaded its models (its heartbeat says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            response = requests.get(f"{stack.url}/ready", timeout=2)
            if response.status_code == 200:
                workers = [w for w in response.json().get("workers", []) if w.get("models")]
                if len(workers) >= stack.inference_processes:
                    return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the {stack.mode} stack was not ready after {timeout:.0f} s:\n{_tail(log)}")


def _tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            pass


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:  # a file, not a pipe: an unread pipe would block gunicorn's access log
        return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


@contextmanager
def embedded(model: str, repo: Path, extra: dict[str, str] | None = None) -> Iterator[Stack]:
    """``deepscreen up --no-build-models`` in a fresh DATA_DIR."""
    folder = Path(tempfile.mkdtemp(prefix="ds-bench-embedded-"))
    port = free_port()
    env = _base_env(model, repo, folder, {"WEB_BIND": f"127.0.0.1:{port}", **(extra or {})})
    log = folder / "up.log"
    proc = _spawn([*CLI, "up", "--no-build-models"], env, log)
    try:
        token = ""
        deadline = time.monotonic() + 120
        while not token and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"deepscreen up exited with {proc.returncode}:\n{_tail(log)}")
            if match := re.search(r"DEEPSCREEN_TOKEN=(\S+)", _tail(log, 10**6)):
                token = match.group(1)
            time.sleep(0.2)
        stack = Stack("embedded", f"http://127.0.0.1:{port}", token, folder,
                      inference_processes=_expected_processes(env))
        stack.groups = {
            "web (gunicorn)": _matching(proc.pid, "gunicorn"),
            "inference workers": _matching(proc.pid, "inference-"),
            "control + beat": _matching(proc.pid, "control@"),
            "supervisor (deepscreen up)": lambda snap: [proc.pid] if proc.pid in snap else [],
        }
        _wait_ready(stack, [proc], log)
        yield stack
    finally:
        _stop(proc, signal.SIGINT, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _redis() -> Iterator[tuple[str, Finder, str]]:
    """(url, finder, label): a redis-server of our own, or BENCH_REDIS_URL's (then shared)."""
    url = os.environ.get("BENCH_REDIS_URL", "")
    binary = shutil.which("redis-server")
    if url or not binary:
        url = url or "redis://127.0.0.1:6379/10"
        import redis

        redis.Redis.from_url(url).flushdb()
        yield url, (lambda snap: [p for p, s in snap.items() if s.cmdline.startswith("redis-server")]), \
            "redis-server (SHARED with other users)"
        return
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--daemonize", "no", "--logfile", ""], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", _tree_of(proc.pid), "redis-server (own instance)"
    finally:
        _stop(proc)


def _postgres_backends(database: str) -> Finder:
    return lambda snap: [p for p, s in snap.items()
                         if s.cmdline.startswith("postgres:") and f" {database} " in s.cmdline]


def _postgres_background(snap: dict[int, Proc]) -> list[int]:
    """The postmaster and its helpers (checkpointer, WAL writer, …): shared by every database."""
    masters = [p for p, s in snap.items() if "/bin/postgres" in s.cmdline.split(" ")[0]]
    return [p for p in tree(snap, masters) if not re.search(r"postgres: .*\d+\.\d+\.\d+\.\d+\(\d+\)", snap[p].cmdline)
            and "[local]" not in snap[p].cmdline]


@contextmanager
def service(model: str, repo: Path, extra: dict[str, str] | None = None) -> Iterator[Stack]:
    """``deepscreen web`` + ``deepscreen worker`` + ``deepscreen beat`` on PostgreSQL, Redis and S3."""
    import psycopg

    folder = Path(tempfile.mkdtemp(prefix="ds-bench-service-"))
    database = f"deepscreen_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    procs: list[subprocess.Popen] = []
    moto = None
    try:
        with _redis() as (redis_url, redis_finder, redis_label):
            s3_port = free_port()
            s3_log = folder / "s3.log"
            with s3_log.open("wb") as s3_out:  # its request log counts the S3 calls
                moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                                        stdout=s3_out, stderr=subprocess.STDOUT, start_new_session=True)
            port = free_port()
            env = _base_env(model, repo, folder, {
                "DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
                + f"/{database}",
                "BROKER_URL": redis_url, "REDIS_URL": redis_url, "RESULT_BACKEND": redis_url,
                "STORAGE_URL": "s3://deepscreen-bench/media", "S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
                "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "WEB_BIND": f"127.0.0.1:{port}",
                "JWT_SECRET": secrets.token_urlsafe(32), **(extra or {}),
            })
            log = folder / "service.log"
            (folder / "data").mkdir(parents=True, exist_ok=True)
            subprocess.run([*CLI, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)
            _make_bucket(env)
            token = subprocess.run([*CLI, "token", "create", "--subject", "bench", "--scopes", "submit read"],
                                   env=env, cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
            web = _spawn([*CLI, "web"], env, log)
            worker = _spawn([*CLI, "worker"], env, log)
            control = _spawn([*CLI, "beat"], env, log)
            procs = [web, worker, control]
            stack = Stack("service", f"http://127.0.0.1:{port}", token.splitlines()[-1], folder,
                          inference_processes=_expected_processes(env))
            stack.groups = {
                "web (gunicorn)": _tree_of(web.pid),
                "inference workers": _tree_of(worker.pid),
                "control + beat": _tree_of(control.pid),
                "PostgreSQL backends (this database)": _postgres_backends(database),
                redis_label: redis_finder,
            }
            stack.others = {
                "PostgreSQL background (shared by all databases)": _postgres_background,
                "S3 server (moto; stands in for S3/MinIO)": _tree_of(moto.pid),
            }
            if redis_label.endswith("(own instance)"):
                stack.counters = service_counters(redis_url, PG_ADMIN, PG_ADMIN.rsplit("/", 1)[0] + f"/{database}",
                                                  database, s3_log)
            _wait_ready(stack, procs, log)
            yield stack
            for proc in procs:
                _stop(proc)
    finally:
        for proc in procs:
            _stop(proc, signal.SIGKILL)
        if moto is not None:
            _stop(moto)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(folder, ignore_errors=True)


def _make_bucket(env: dict[str, str]) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"], aws_access_key_id="bench",
                      aws_secret_access_key="bench", region_name="us-east-1")
    for _ in range(100):
        try:
            s3.create_bucket(Bucket="deepscreen-bench")
            return
        except Exception:  # the server is still starting
            time.sleep(0.1)
    raise RuntimeError("the S3 server did not start")


STACKS = {"embedded": embedded, "service": service}
