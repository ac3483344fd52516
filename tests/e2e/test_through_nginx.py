"""The whole road over real HTTP: nginx → gunicorn (2 workers) → PostgreSQL/Redis/S3 → a Celery
worker process → ONNX → back to the client, driven with an API key made by the real CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from tests.conftest import free_port, jpeg_bytes
from tests.support.processes import Gunicorn, Nginx, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(service_env, worker, tmp_path_factory):  # type: ignore[no-untyped-def]
    logs = tmp_path_factory.mktemp("stack")
    web = Gunicorn(service_env, logs / "gunicorn.log", free_port(), workers=2)
    web.start()
    proxy = Nginx(logs / "nginx", free_port(), web.url.removeprefix("http://"))
    proxy.start()
    yield proxy.url
    proxy.stop()
    web.stop()


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_api_key_to_verdict_through_nginx(stack, service_env):  # type: ignore[no-untyped-def]
    import os

    env = {**os.environ, **service_env}
    made = cli("apikey", "create", "--subject", "e2e-tenant", env=env)
    assert made.returncode == 0, made.stderr
    api_key = made.stdout.strip()
    assert api_key.startswith("ds_")

    assert requests.post(f"{stack}/v1/auth/token", headers={"X-API-Key": api_key + "x"}, timeout=10).status_code == 401
    token = requests.post(f"{stack}/v1/auth/token", headers={"X-API-Key": api_key}, timeout=10).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}

    response = requests.post(f"{stack}/v1/jobs", headers=headers, timeout=30,
                             files={"file": ("pic.jpg", jpeg_bytes((160, 120), seed=900), "image/jpeg")})
    assert response.status_code == 202, response.text
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # once: nginx hides the app's copy
    status_url = stack + response.json()["status_url"]

    def finished():  # type: ignore[no-untyped-def]
        body = requests.get(status_url, headers=headers, timeout=10).json()
        return body if body["status"] in ("succeeded", "failed") else None

    job = wait_for(finished, 60, what="the job")
    assert job["status"] == "succeeded"
    assert 0.0 <= job["results"]["nsfw"]["score"] <= 1.0
    assert job["results"]["nsfw"]["model_version"] == "1"
    held = requests.post(f"{stack}/v1/jobs", headers=headers, params={"wait": "30"}, timeout=60,
                         files={"file": ("held.jpg", jpeg_bytes((160, 120), seed=901), "image/jpeg")})
    assert held.status_code == 200, held.text  # submit and wait in one request, through nginx
    assert held.json()["status"] == "succeeded" and "Retry-After" not in held.headers
    assert requests.get(f"{stack}/ready", timeout=10).status_code == 200


def test_scan_cli_against_the_stack(stack, service_env, tmp_path):  # type: ignore[no-untyped-def]
    import os

    from core.settings import get_settings
    from core.tokens import issue_token

    files = []
    for seed in (1, 2):
        path = tmp_path / f"img{seed}.jpg"
        path.write_bytes(jpeg_bytes((90, 90), seed=1000 + seed))
        files.append(str(path))
    token = issue_token(get_settings(), "scan-user")
    result = cli("scan", *files, "--url", stack, "--token", token, env={**os.environ, **service_env})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("img")]
    assert len(lines) == 2 and all("succeeded" in line and "nsfw" in line for line in lines)
