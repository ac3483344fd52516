"""Models change, verdicts follow — with real processes (a prefork Celery worker, beat + the control
queue), PostgreSQL, Redis and the S3 server, in a database of their own.

The model versions are real: nsfw/1 as built, then nsfw/2 and nsfw/3, the same network with other
thresholds (a different threshold is a new version an operator would promote), so labels flip.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import secrets
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select

from tests.conftest import PG_ADMIN, free_port, jpeg_bytes
from tests.faults.fault_support import kill9
from tests.support.environment import apply_env
from tests.support.processes import Control, Worker, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(service_env: dict[str, str], model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("lifecycle")
    name = f"deepscreen_lifecycle_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    repo = folder / "repo"
    shutil.copytree(Path(model_repo) / "nsfw" / "1", repo / "nsfw" / "1")
    redis_url = service_env["REDIS_URL"].rsplit("/", 1)[0] + "/14"
    env = {**service_env, "DATABASE_URL": f"{base}/{name}", "MODEL_REPOSITORY": str(repo), "BROKER_URL": redis_url,
           "REDIS_URL": redis_url, "RESULT_BACKEND": redis_url, "STORAGE_URL": "s3://deepscreen-test/lifecycle",
           "DEFAULT_MODELS": "nsfw", "SWEEP_INTERVAL_SECONDS": "1", "REPROCESS_RATE": "40", "REPROCESS_CHUNK": "4",
           "LEASE_SECONDS": "10", "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    with apply_env(env):
        from core.migrate import upgrade

        upgrade(env["DATABASE_URL"])
        worker = Worker(env, folder / "worker.log", queues="inference,text,reprocess")
        control = Control(env, folder)
        worker.start()
        control.start()
        from web.app import create_app

        app = create_app()
        try:
            yield {"env": env, "repo": repo, "worker": worker, "control": control, "client": app.test_client()}
        finally:
            worker.stop()
            control.stop()
    redis.Redis.from_url(redis_url).flushdb()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def admin(stack: dict) -> dict[str, str]:
    from core.settings import get_settings
    from core.tokens import issue_token

    return {"Authorization": f"Bearer {issue_token(get_settings(), 'ops', ('submit', 'read', 'admin'))}"}


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def add_version(repo: Path, version: str, threshold: float) -> None:
    from ml.manifest import Manifest

    target = repo / "nsfw" / version
    shutil.copytree(repo / "nsfw" / "1", target)
    manifest = Manifest.load(target)
    manifest.version, manifest.directory, manifest.thresholds = version, target, {"nsfw": threshold}
    manifest.description = f"nsfw with threshold {threshold} (lifecycle test version)"
    manifest.save()


def submit(client: Any, headers: dict[str, str], seed: int, **fields: str) -> str:
    response = client.post("/v1/jobs", headers=headers, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(jpeg_bytes((64, 48), seed=seed)), f"{seed}.jpg"), **fields})
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["id"]


def finished(client: Any, headers: dict[str, str], job_ids: list[str], timeout: float = 60) -> dict[str, dict]:
    def done() -> dict[str, dict] | None:
        docs = {j: client.get(f"/v1/jobs/{j}", headers=headers).get_json() for j in job_ids}
        return docs if all(d["status"] in ("succeeded", "failed") for d in docs.values()) else None

    return wait_for(done, timeout, interval=0.2, what="the jobs")


def run_done(client: Any, headers: dict[str, str], run_id: str, timeout: float = 120) -> dict:
    return wait_for(lambda: (r := client.get(f"/v1/reprocess/{run_id}", headers=headers).get_json())
                    and r["status"] == "done" and r, timeout, interval=0.3, what=f"run {run_id}")


def result_counts() -> dict[tuple[str, str], int]:
    from core.db import session_scope
    from core.models import Result

    with session_scope() as session:
        rows = session.execute(select(Result.job_id, Result.model_version, func.count())
                               .group_by(Result.job_id, Result.model_version)).all()
    return {(job, version): count for job, version, count in rows}


def test_promotion_reprocesses_exactly_what_lacks_the_new_version(stack: dict, admin: dict, receiver) -> None:  # type: ignore[no-untyped-def]
    client, repo = stack["client"], stack["repo"]
    url, received = receiver
    jobs = [submit(client, admin, seed) for seed in range(100, 118)]
    watched = submit(client, admin, 118, callback_url=url, notify_rescreen="true")
    jobs.append(watched)
    first = finished(client, admin, jobs)
    assert all(d["status"] == "succeeded" and d["results"]["nsfw"]["model_version"] == "1" for d in first.values())
    scores = sorted(d["results"]["nsfw"]["score"] for d in first.values())
    threshold = scores[len(scores) // 2]  # about half the labels flip to nsfw under v2
    add_version(repo, "2", threshold)

    promoted = client.post("/v1/models/nsfw/versions/2/promote", headers=admin)
    assert promoted.status_code == 200, promoted.get_data(as_text=True)
    body = promoted.get_json()
    assert body["from"] == "candidate" and body["to"] == "live" and body["previous_live"] == "1"
    run = body["reprocess_run"]
    assert run["total"] == len(jobs) and run["baseline_version"] == "1"
    done = run_done(client, admin, run["id"])
    expected_flips = sum(1 for d in first.values() if d["results"]["nsfw"]["score"] >= threshold)
    assert done["done"] == len(jobs) and done["failed"] == 0 and done["flipped"] == expected_flips
    counts = result_counts()
    assert all(counts[(j, "1")] == 1 and counts[(j, "2")] == 1 for j in jobs)  # no more, no fewer

    report = client.get(f"/v1/reprocess/{run['id']}/flips", headers=admin).get_json()
    assert len(report["flips"]) == expected_flips and report["summary"]["by_labels"] == {"safe->nsfw": expected_flips}
    for flip in report["flips"]:
        assert flip["old_label"] == "safe" and flip["new_label"] == "nsfw"
        assert flip["delta"] == pytest.approx(flip["new_score"] - flip["old_score"])
    csv = client.get(f"/v1/reprocess/{run['id']}/flips?format=csv", headers=admin)
    assert csv.mimetype == "text/csv" and len(csv.get_data(as_text=True).strip().splitlines()) == expected_flips + 1

    doc = client.get(f"/v1/jobs/{jobs[0]}?versions=all", headers=admin).get_json()
    assert doc["results"]["nsfw"]["model_version"] == "2"
    assert {r["model_version"] for r in doc["results_history"]["nsfw"]} == {"1", "2"}
    if first[watched]["results"]["nsfw"]["score"] >= threshold:
        wait_for(lambda: any(p["event"] == "job.rescreened" for p in received), 30, what="job.rescreened")
        event = next(p for p in received if p["event"] == "job.rescreened")
        assert event["job"]["id"] == watched and event["job"]["results"]["nsfw"]["label"] == "nsfw"
    models = client.get("/v1/models", headers=admin).get_json()["items"]
    states = {v["version"]: v["state"] for v in models[0]["versions"]}
    assert states == {"1": "retired", "2": "live"} and models[0]["version"] == "2"
    # Workers follow the promotion without a restart, and /ready says which versions each one serves.
    def serving_v2() -> bool:
        workers = client.get("/ready").get_json().get("workers", [])
        return any(w.get("models", {}).get("nsfw@2", {}).get("role") == "live" for w in workers)

    wait_for(serving_v2, 30, what="the worker to serve nsfw@2")
    fresh = submit(client, admin, 119)
    fresh_doc = finished(client, admin, [fresh])[fresh]
    assert fresh_doc["results"]["nsfw"]["model_version"] == "2"


def test_kill_9_mid_run_resumes_with_nothing_lost_or_doubled(stack: dict, admin: dict) -> None:
    client, repo, worker = stack["client"], stack["repo"], stack["worker"]
    jobs = [submit(client, admin, seed) for seed in range(200, 240)]
    finished(client, admin, jobs)
    add_version(repo, "3", 0.5)
    started = client.post("/v1/reprocess", headers=admin, json={"model": "nsfw", "version": "3", "rate": 8})
    assert started.status_code == 202
    run_id = started.get_json()["id"]
    kills = 0
    while kills < 3:
        progress = client.get(f"/v1/reprocess/{run_id}", headers=admin).get_json()
        if progress["status"] == "done":
            break
        if progress["done"] > kills * 8:
            kill9(worker.pool_pid())
            kills += 1
        time.sleep(0.1)
    assert kills >= 2
    done = run_done(client, admin, run_id, timeout=180)
    total = done["total"]
    assert done["done"] + done["failed"] == total and done["failed"] == 0
    counts = result_counts()
    assert all(counts.get((j, "3")) == 1 for j in jobs)  # each re-screened once: 0 lost, 0 duplicated
    from core.db import session_scope
    from core.lifecycle_models import ReprocessItem

    with session_scope() as session:
        items = session.scalar(select(func.count()).select_from(ReprocessItem).where(ReprocessItem.run_id == run_id))
    assert items == total


def test_live_latency_during_a_run_and_promotion_under_load(stack: dict, admin: dict) -> None:
    client, repo = stack["client"], stack["repo"]

    def latency(seed: int) -> float:
        started = time.monotonic()
        job = submit(client, admin, seed)
        finished(client, admin, [job])
        return time.monotonic() - started

    idle = [latency(300 + i) for i in range(8)]
    backlog = [submit(client, admin, seed) for seed in range(400, 460)]
    finished(client, admin, backlog)
    add_version(repo, "4", 0.3)
    run = client.post("/v1/reprocess", headers=admin, json={"model": "nsfw", "version": "4"}).get_json()
    during = []
    while True:
        during.append(latency(500 + len(during)))
        state = client.get(f"/v1/reprocess/{run['id']}", headers=admin).get_json()
        if state["status"] == "done" or len(during) >= 12:
            break
    idle_p50, during_p50 = statistics.median(idle), statistics.median(during)
    print(f"\nlive job latency: idle p50 {idle_p50 * 1000:.0f} ms, during a reprocessing run p50 "
          f"{during_p50 * 1000:.0f} ms ({during_p50 / idle_p50:.2f}x) over {len(during)} jobs")
    assert during_p50 <= max(2 * idle_p50, idle_p50 + 0.3)

    # A promotion under steady load: nothing lost, every result names the version that made it.
    load = [submit(client, admin, 600 + i) for i in range(10)]
    assert client.post("/v1/models/nsfw/versions/4/promote", headers=admin,
                       json={"reprocess": False}).status_code == 200
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:  # keep the load on until the worker serves the new version
        load.append(submit(client, admin, 600 + len(load)))
        latest = client.get(f"/v1/jobs/{load[-5]}", headers=admin).get_json() if len(load) > 15 else {}
        if latest.get("results", {}).get("nsfw", {}).get("model_version") == "4":
            break
        time.sleep(0.1)
    load += [submit(client, admin, 600 + len(load) + i) for i in range(5)]
    docs = finished(client, admin, load, timeout=90)
    assert all(d["status"] == "succeeded" for d in docs.values())
    versions = [d["results"]["nsfw"]["model_version"] for d in docs.values()]
    assert set(versions) <= {"2", "4"} and versions[-1] == "4"
    for d in docs.values():
        expected = {"2": None, "4": 0.3}[d["results"]["nsfw"]["model_version"]]
        if expected is not None:
            assert d["results"]["nsfw"]["label"] == ("nsfw" if d["results"]["nsfw"]["score"] >= expected else "safe")


def test_shadow_results_never_appear_as_the_verdict(stack: dict, admin: dict) -> None:
    client, repo = stack["client"], stack["repo"]
    add_version(repo, "5", 0.0)  # would call everything nsfw
    assert client.post("/v1/models/nsfw/versions/5/shadow", headers=admin,
                       json={"sample": 1.0}).status_code == 200
    time.sleep(12)  # the worker's heartbeat loads the shadow (every LEASE_SECONDS / 3)
    jobs = [submit(client, admin, seed) for seed in range(700, 708)]
    docs = finished(client, admin, jobs)
    live = client.get("/v1/models", headers=admin).get_json()["items"][0]["version"]
    for job_id, doc in docs.items():
        assert doc["results"]["nsfw"]["model_version"] == live and doc["results"]["nsfw"]["model_version"] != "5"
        history = client.get(f"/v1/jobs/{job_id}?versions=all", headers=admin).get_json()["results_history"]["nsfw"]
        shadow = [r for r in history if r["model_version"] == "5"]
        assert len(shadow) == 1 and shadow[0]["kind"] == "shadow" and shadow[0]["label"] == "nsfw"
    from core.model_compare import compare

    report = compare("nsfw", live, "5")
    assert report["jobs"] >= len(jobs) and report["agreement"] is not None
    lookup = client.get(f"/v1/lookup/{hashlib.sha256(jpeg_bytes((64, 48), seed=700)).hexdigest()}", headers=admin)
    assert lookup.get_json()["results"]["nsfw"]["model_version"] == live


def test_cancel_stops_a_run_and_a_later_start_resumes_it(stack: dict, admin: dict) -> None:
    client, repo = stack["client"], stack["repo"]
    jobs = [submit(client, admin, seed) for seed in range(800, 830)]
    finished(client, admin, jobs)
    add_version(repo, "6", 0.5)
    run = client.post("/v1/reprocess", headers=admin, json={"model": "nsfw", "version": "6", "rate": 4}).get_json()
    wait_for(lambda: client.get(f"/v1/reprocess/{run['id']}", headers=admin).get_json()["done"] >= 4, 60,
             what="some progress")
    cancelled = client.post(f"/v1/reprocess/{run['id']}/cancel", headers=admin).get_json()
    assert cancelled["status"] == "cancelled"
    time.sleep(3)
    stopped = client.get(f"/v1/reprocess/{run['id']}", headers=admin).get_json()
    time.sleep(3)
    assert client.get(f"/v1/reprocess/{run['id']}", headers=admin).get_json()["done"] == stopped["done"]
    assert stopped["done"] < stopped["total"]
    again = client.post("/v1/reprocess", headers=admin, json={"model": "nsfw", "version": "6", "rate": 40})
    assert again.get_json()["id"] == run["id"]
    done = run_done(client, admin, run["id"])
    assert done["done"] == done["total"]


def test_admin_scope_is_required(stack: dict, auth: dict) -> None:
    client = stack["client"]
    assert client.post("/v1/models/nsfw/versions/1/promote", headers=auth).status_code == 403
    assert client.post("/v1/reprocess", headers=auth, json={"model": "nsfw"}).status_code == 403
    assert client.get("/v1/reprocess", headers=auth).status_code == 403
