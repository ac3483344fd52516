"""End-to-end throughput against offline model throughput, measured side by side in one run.

Starts a stack — embedded (`deepscreen up`: SQLite, filesystem broker, local blobs) and/or service
(PostgreSQL, Redis broker + cache, S3 over HTTP) with gunicorn and one Celery worker process —
submits N distinct images over HTTP, waits for every verdict, and compares with the same model called
offline on the same images in this process, batch 1, one thread (as the worker runs it). The ratio is
the cost of the road on one machine: HTTP, validation, storage, broker, database, and every one of
those processes sharing the same cores as the model.

    python bench/end_to_end.py [--images 60] [--model nsfw] [--concurrency 8] [--mode embedded|service|both]

Service mode needs PostgreSQL (BENCH_PG_ADMIN_URL, default postgres@127.0.0.1) and Redis
(BENCH_REDIS_URL, default DB 12, flushed); the S3 server is moto's, started here.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402


def images(n: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        pixels = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


QUIET = {"LOG_LEVEL": "WARNING", "RATE_LIMIT_DEFAULT": "100000/minute", "RATE_LIMIT_SUBMIT": "100000/minute"}


def _warmup_image() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def offline(model: str, repo: Path, data: list[bytes]) -> float:
    from ml.image_decode import decode_image
    from ml.repository import ModelRepository

    pipeline = ModelRepository(repo).load(model, ["CPUExecutionProvider"], threads=1)
    pipeline.predict([decode_image(data[0], 10**8)])  # warm-up
    start = time.perf_counter()
    for blob in data:
        pipeline.predict([decode_image(blob, 10**8)])
    return len(data) / (time.perf_counter() - start)


@contextmanager
def embedded_stack(model: str, repo: Path) -> Iterator[tuple[str, str]]:
    """`deepscreen up`: SQLite, filesystem broker, local blobs; yields (base URL, token)."""
    tmp = Path(tempfile.mkdtemp(prefix="ds-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "BROKER_", "REDIS_", "STORAGE_"))}
    env.update(DATA_DIR=str(tmp), MODEL_REPOSITORY=str(repo), WEB_BIND=f"127.0.0.1:{port}", DEFAULT_MODELS=model,
               **QUIET)
    log = tmp / "up.log"
    with log.open("w") as out:  # a file, not a pipe: an unread pipe would block gunicorn's access log
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "up", "--no-build-models"], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        token = ""
        for _ in range(240):
            if match := re.search(r"DEEPSCREEN_TOKEN=(\S+)", log.read_text()):
                token = match.group(1)
                break
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", token
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)


@contextmanager
def service_stack(model: str, repo: Path) -> Iterator[tuple[str, str]]:
    """PostgreSQL (a database made and dropped here), Redis DB 12, moto's S3 server, gunicorn, one worker."""
    import psycopg

    from tests.support.environment import apply_env
    from tests.support.processes import Gunicorn, MotoServer, Worker

    admin = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"deepscreen_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    s3 = MotoServer(free_port(), free_port())
    s3.launch()
    tmp = Path(tempfile.mkdtemp(prefix="ds-bench-"))
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    env = {
        "DATABASE_URL": admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}",
        "BROKER_URL": redis_url, "REDIS_URL": redis_url, "RESULT_BACKEND": redis_url,
        "STORAGE_URL": "s3://deepscreen-bench/media", "S3_ENDPOINT_URL": s3.url, "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench", "MODEL_REPOSITORY": str(repo), "DATA_DIR": str(tmp),
        "JWT_SECRET": secrets.token_urlsafe(32), "DEFAULT_MODELS": model, **QUIET,
    }
    web = worker = None
    try:
        with apply_env(env):
            import redis

            from core.migrate import upgrade
            from core.object_store import get_store
            from core.settings import get_settings
            from core.tokens import issue_token

            redis.Redis.from_url(redis_url).flushdb()
            upgrade(env["DATABASE_URL"])
            get_store().ensure_bucket()  # type: ignore[attr-defined]
            token = issue_token(get_settings(), "bench")
        worker = Worker(env, tmp / "worker.log")
        worker.start()
        web = Gunicorn(env, tmp / "web.log", free_port(), workers=2)
        web.start()
        yield web.url, token
    finally:
        for proc in (web, worker):
            if proc is not None:
                proc.stop()
        s3.shutdown()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def end_to_end(stack: AbstractContextManager[tuple[str, str]], data: list[bytes], concurrency: int) -> float:
    with stack as (base, token):
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(120):
            try:
                if requests.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        warm = requests.post(f"{base}/v1/jobs", headers=headers, files={"file": ("w.jpg", _warmup_image())})
        _wait(base, headers, [warm.json()["status_url"]])

        def submit(blob: bytes) -> str:
            response = requests.post(f"{base}/v1/jobs", headers=headers, files={"file": ("x.jpg", blob)}, timeout=60)
            response.raise_for_status()
            return response.json()["status_url"]

        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            urls = list(pool.map(submit, data))
        _wait(base, headers, urls)
        return len(data) / (time.perf_counter() - start)


def _wait(base: str, headers: dict[str, str], urls: list[str]) -> None:
    pending = set(urls)
    deadline = time.monotonic() + 600
    while pending and time.monotonic() < deadline:
        for url in list(pending):
            body = requests.get(base + url, headers=headers, timeout=30).json()
            if body["status"] in ("succeeded", "failed"):
                if body["status"] == "failed":
                    raise RuntimeError(f"job failed: {body['error']}")
                pending.discard(url)
        time.sleep(0.1)
    if pending:
        raise RuntimeError(f"{len(pending)} jobs did not finish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--model", default="nsfw")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repository", type=Path,
                        default=Path(os.environ.get("MODEL_REPOSITORY", ROOT / "model_repository")))
    parser.add_argument("--mode", choices=["embedded", "service", "both"], default="both")
    args = parser.parse_args()
    data = images(args.images)
    off = offline(args.model, args.repository, data)
    rows = [("offline: decode + predict, batch 1, 1 thread", off)]
    if args.mode in ("embedded", "both"):
        e2e = end_to_end(embedded_stack(args.model, args.repository), data, args.concurrency)
        rows.append(("end to end, embedded (SQLite, filesystem broker)", e2e))
    if args.mode in ("service", "both"):
        e2e = end_to_end(service_stack(args.model, args.repository), data, args.concurrency)
        rows.append(("end to end, service (PostgreSQL, Redis, S3)", e2e))
    print(f"model {args.model}, {args.images} distinct 256x256 JPEGs, {os.cpu_count()} cores, "
          f"gunicorn 2 workers + 1 Celery worker process, {args.concurrency} concurrent clients")
    print(f"{'path':<52} {'images/s':>9} {'vs offline':>10}")
    for label, rate in rows:
        print(f"{label:<52} {rate:>9.1f} {rate / off:>10.2f}")


if __name__ == "__main__":
    main()
