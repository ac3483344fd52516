"""Real services for the tests: a PostgreSQL database made for this run, Redis, an S3 server over
HTTP (moto's, since AWS itself cannot be reached), the real model repository, and real Celery
worker processes. Nothing here runs Celery in eager mode."""

from __future__ import annotations

import io
import os
import secrets
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from PIL import Image

from tests.support import processes
from tests.support.environment import apply_env

PG_ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"deepscreen_test_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_db() -> Iterator[int]:
    """A Redis database number of our own, emptied before and after."""
    db = int(os.environ.get("TEST_REDIS_DB", "11"))
    client = redis.Redis.from_url(f"{REDIS_BASE}/{db}")
    client.flushdb()
    yield db
    client.flushdb()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[processes.MotoServer]:
    server = processes.MotoServer(free_port(), free_port())
    server.launch()
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real model repository, built once (from packages that ship weights; no network)."""
    from ml.build.builders import build_all

    prebuilt = os.environ.get("TEST_MODEL_REPOSITORY")
    if prebuilt:
        return Path(prebuilt)
    root = tmp_path_factory.mktemp("model_repository")
    build_all(root)
    return root


@pytest.fixture(scope="session", autouse=True)
def shared_repository_stays_unchanged() -> Iterator[None]:
    """Tests share the repository `make test` built; one that wrote a version into it would change
    which version is live for every test after it."""
    prebuilt = os.environ.get("TEST_MODEL_REPOSITORY")
    if not prebuilt:
        yield
        return
    def listing() -> list[str]:
        return sorted(str(p.relative_to(prebuilt)) for p in Path(prebuilt).glob("*/*/manifest.json"))

    before = listing()
    yield
    assert listing() == before, "a test wrote into the shared model repository"


@pytest.fixture(scope="session")
def service_env(pg_url: str, redis_db: int, s3_server: processes.MotoServer, model_repo: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Service mode: PostgreSQL, Redis broker + cache, S3 over HTTP. Applied to os.environ for the session."""
    bucket = "deepscreen-test"
    env = {
        "DATABASE_URL": pg_url,
        "BROKER_URL": f"{REDIS_BASE}/{redis_db}",
        "REDIS_URL": f"{REDIS_BASE}/{redis_db}",
        "RESULT_BACKEND": f"{REDIS_BASE}/{redis_db}",
        "STORAGE_URL": f"s3://{bucket}/media",
        "S3_ENDPOINT_URL": s3_server.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "MODEL_REPOSITORY": str(model_repo),
        "DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "JWT_SECRET": secrets.token_urlsafe(32),
        "WEBHOOK_SECRET": secrets.token_urlsafe(32),
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",  # the tests' own receivers
        "DEFAULT_MODELS": "nsfw",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_DEFAULT": "10000/minute",
        "RATE_LIMIT_SUBMIT": "10000/minute",
    }
    with apply_env(env):
        from core.migrate import upgrade
        from core.object_store import get_store

        upgrade(pg_url)
        get_store().ensure_bucket()  # type: ignore[attr-defined]
        yield env


@pytest.fixture(scope="session")
def worker(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[processes.Worker]:
    """One real Celery worker process (prefork, 1 child) on the test services."""
    proc = processes.Worker(service_env, tmp_path_factory.mktemp("worker-log") / "worker.log")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture()
def app(service_env: dict[str, str]):  # type: ignore[no-untyped-def]
    from web.app import create_app

    return create_app()


@pytest.fixture()
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture()
def subject() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


@pytest.fixture()
def auth(service_env: dict[str, str], subject: str) -> dict[str, str]:
    from core.settings import get_settings
    from core.tokens import issue_token

    return {"Authorization": f"Bearer {issue_token(get_settings(), subject)}"}


def png_bytes(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_bytes(size: tuple[int, int] = (64, 48), seed: int = 0) -> bytes:
    import numpy as np

    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()
