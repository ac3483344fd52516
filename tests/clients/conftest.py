"""A live deepscreen for the client tests: real gunicorn + a real Celery worker on the test services
(PostgreSQL, Redis, the S3 server), reached over loopback like any client would."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import free_port
from tests.support.processes import Gunicorn, Worker

ARTIFACTS_ENV = "DEEPSCREEN_TEST_ARTIFACTS"


@dataclass
class Live:
    url: str
    env: dict[str, str]

    def token(self, subject: str, scopes: tuple[str, ...] = ("submit", "read")) -> str:
        from core.settings import get_settings
        from core.tokens import issue_token

        return issue_token(get_settings(), subject, scopes)

    def api_key(self, subject: str) -> str:
        """An API key made the way an operator makes one: with the real CLI."""
        made = subprocess.run([sys.executable, "-m", "cli.main", "apikey", "create", "--subject", subject],
                              env={**os.environ, **self.env}, capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        return made.stdout.strip()


@pytest.fixture(scope="session")
def live(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """gunicorn (2 sync workers) and one Celery worker process; DEFAULT_MODELS is the cheap ``nsfw``
    (tests that need faces or OCR name ``deepfake`` / ``meme`` per request)."""
    logs = tmp_path_factory.mktemp("clients-stack")
    worker = Worker(service_env, logs / "worker.log", name="clients")
    worker.start()
    web = Gunicorn(service_env, logs / "gunicorn.log", free_port(), workers=2)
    web.start()
    try:
        yield Live(web.url, service_env)
    finally:
        web.stop()
        worker.stop()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $DEEPSCREEN_TEST_ARTIFACTS (CI uploads it) or a pytest temp folder."""
    chosen = os.environ.get(ARTIFACTS_ENV)
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("client-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nclient test artifacts (screenshots): {folder}")
    return folder


def jpeg(pixels: np.ndarray, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def astronaut_jpeg(quality: int = 92) -> bytes:
    """skimage's astronaut (NASA, public domain): one real face, box about [181, 62, 268, 172].
    Another ``quality`` gives other bytes (a test that needs content the server has not seen yet)."""
    from skimage import data

    return jpeg(data.astronaut(), quality)


def meme_jpeg(top: str = "WHEN THE CODE", bottom: str = "WORKS OFFLINE", seed: int = 0) -> bytes:
    from tests.ml.meme_fixtures import draw_meme

    return jpeg(draw_meme(top, bottom, seed=seed))


def noise_jpeg(seed: int, size: tuple[int, int] = (96, 96)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return jpeg(pixels)
