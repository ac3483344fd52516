"""Operating it: a request's X-Request-ID is on the web's and the worker's JSON log lines for its job,
and a real worker's own /metrics shows its stage histograms move while it screens."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import free_port, jpeg_bytes
from tests.support.processes import Gunicorn, Worker, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def observed(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("observability")
    metrics_port = free_port()
    # A queue of its own: no other test's worker claims these jobs, so the log lines are this worker's.
    env = {**service_env, "INFERENCE_QUEUE": "observed", "LOG_FORMAT": "json", "LOG_LEVEL": "INFO",
           "WORKER_METRICS_PORT": str(metrics_port), "PROMETHEUS_MULTIPROC_DIR": str(folder / "metrics")}
    (folder / "metrics").mkdir()
    web = Gunicorn(env, folder / "web.log", free_port(), workers=1)
    worker = Worker(env, folder / "worker.log", queues="observed")
    web.start()
    worker.start()
    yield {"web": web, "worker": worker, "metrics": f"http://127.0.0.1:{metrics_port}/metrics"}
    worker.stop()
    web.stop()


def _json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _counter(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_request_id_follows_the_job_into_the_worker_logs(observed: dict, auth: dict[str, str]) -> None:
    request_id = f"abc-{uuid.uuid4().hex[:8]}"
    before = requests.get(observed["metrics"], timeout=5).text
    response = requests.post(f"{observed['web'].url}/v1/jobs", headers={**auth, "X-Request-ID": request_id},
                             files={"file": ("a.jpg", jpeg_bytes((90, 70), seed=4242))}, timeout=30)
    assert response.status_code == 202, response.text
    assert response.headers["X-Request-ID"] == request_id
    job_id = response.json()["id"]
    wait_for(lambda: requests.get(f"{observed['web'].url}/v1/jobs/{job_id}", headers=auth, timeout=10)
             .json()["status"] == "succeeded", 60, what="the job")

    web_lines = [r for r in _json_lines(observed["web"].log()) if r.get("request_id") == request_id]
    assert any(r.get("path") == "/v1/jobs" and r.get("status") == 202 for r in web_lines), web_lines
    worker_lines = wait_for(lambda: [r for r in _json_lines(observed["worker"].log())
                                     if r.get("job_id") == job_id], 10, what="the worker's lines")
    assert worker_lines and all(r["request_id"] == request_id for r in worker_lines), worker_lines
    assert any(r.get("status") == "succeeded" for r in worker_lines)
    # A caller's unusable id is replaced, never echoed into logs or headers.
    odd = requests.get(f"{observed['web'].url}/health", headers={"X-Request-ID": "bad id <script>"}, timeout=5)
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["X-Request-ID"])

    after = requests.get(observed["metrics"], timeout=5).text
    for stage in ("fetch", "decode", "record"):
        assert _counter(after, "deepscreen_stage_seconds_count", model="-", stage=stage) > \
            _counter(before, "deepscreen_stage_seconds_count", model="-", stage=stage), stage
    assert _counter(after, "deepscreen_stage_seconds_count", model="nsfw", stage="infer") > \
        _counter(before, "deepscreen_stage_seconds_count", model="nsfw", stage="infer")
    assert _counter(after, "deepscreen_jobs_finished_total", model="nsfw", outcome="succeeded") >= 1
    assert 'deepscreen_model_info{' in after and 'provider="CPUExecutionProvider"' in after
    assert _counter(after, "deepscreen_job_queue_seconds_count", queue="observed") >= 1
    assert "job_id" not in after and request_id not in after  # bounded labels only


def test_every_line_is_json(observed: dict) -> None:
    lines = [line for line in observed["web"].log().splitlines() + observed["worker"].log().splitlines()
             if line.startswith("{")]
    assert len(lines) > 5
    for line in lines:
        record = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(record)
