"""The client's HTTP policies against a scripted local server: retries on 429/503 honouring
Retry-After (seconds and HTTP dates), backoff without it, connection errors, retried uploads that
resend the whole file under the same Idempotency-Key, API keys traded and re-traded, ?wait= then
polling, and /v1/batches used when the server has it."""

from __future__ import annotations

import socket
import threading
import time
from email.utils import formatdate

import pytest

from deepscreen.client import (
    Batch,
    Client,
    FeatureUnavailable,
    RateLimited,
    TransportError,
    Unavailable,
    WaitTimeout,
)
from tests.clients.scripted_server import Reply, Seen, error, job, scripted


class Sleeps(list[float]):
    """Records every pause the client asks for, and really pauses (briefly)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        time.sleep(min(seconds, 0.05))


def test_429_then_503_are_retried_after_the_servers_retry_after() -> None:
    later = formatdate(time.time() + 3, usegmt=True)  # Retry-After as an HTTP date
    with scripted({"GET /v1/jobs/j1": [
        Reply(429, error("rate_limited"), {"Retry-After": "2"}),
        Reply(503, error("database_unavailable"), {"Retry-After": later}),
        Reply(200, job("j1", "succeeded")),
    ]}) as server:
        sleeps = Sleeps()
        found = Client(server.url, token="t", sleep=sleeps).get_job("j1")
    assert found.status == "succeeded"
    assert len(server.calls("GET", "/v1/jobs/j1")) == 3
    assert sleeps[0] == 2.0
    assert 1.0 <= sleeps[1] <= 3.0  # the date, less the time it took to get here
    assert all(s.headers["Authorization"] == "Bearer t" for s in server.seen)
    assert server.seen[0].headers["User-Agent"].startswith("deepscreen-client/")


def test_without_retry_after_the_backoff_grows_and_then_the_error_is_raised() -> None:
    with scripted({"GET /v1/models": [Reply(503, error("unavailable"))],
                   "GET /v1/jobs/j2": [Reply(429, error("rate_limited"), {"Retry-After": "7"})]}) as server:
        sleeps = Sleeps()
        client = Client(server.url, token="t", max_retries=4, backoff=0.5, sleep=sleeps)
        with pytest.raises(Unavailable) as unavailable:
            client.models()
        assert unavailable.value.status == 503 and unavailable.value.code == "unavailable"
        assert len(server.calls("GET", "/v1/models")) == 5  # one try and four retries
        for attempt, pause in enumerate(sleeps):
            ceiling = 0.5 * 2 ** attempt
            assert ceiling / 2 <= pause <= ceiling  # jittered exponential backoff
        with pytest.raises(RateLimited) as limited:
            client.get_job("j2")
        assert limited.value.retry_after == 7.0


def test_connection_refused_is_retried_until_the_server_comes_up() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}", token="t", max_retries=6, backoff=0.2)

    def start_later() -> None:
        time.sleep(0.6)
        from http.server import ThreadingHTTPServer

        from tests.clients.scripted_server import ScriptedServer

        server = ScriptedServer({"GET /v1/jobs/late": [Reply(200, job("late", "queued"))]})
        server.httpd.server_close()
        server.httpd = ThreadingHTTPServer(("127.0.0.1", port), server.httpd.RequestHandlerClass)
        threading.Thread(target=server.httpd.serve_forever, daemon=True).start()
        started.append(server)

    started: list = []
    threading.Thread(target=start_later).start()
    try:
        assert client.get_job("late").status == "queued"
    finally:
        for server in started:
            server.httpd.shutdown()
            server.httpd.server_close()
    with pytest.raises(TransportError):
        Client(f"http://127.0.0.1:{port}", token="t", max_retries=1, backoff=0.01).get_job("gone")


def test_a_retried_upload_sends_the_whole_file_again_under_the_same_idempotency_key(tmp_path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8" + bytes(range(256)) * 40)
    with scripted({"POST /v1/jobs": [Reply(503, error("storage_unavailable"), {"Retry-After": "0"}),
                                     Reply(202, job("up1", "queued"))]}) as server:
        submitted = Client(server.url, token="t").submit_file(path, text="a caption", models=["nsfw", "meme"])
    assert submitted.id == "up1"
    first, second = server.calls("POST", "/v1/jobs")
    assert path.read_bytes() in first.body and path.read_bytes() in second.body
    assert len(first.body) == len(second.body)  # the same parts (only the random boundary differs)
    assert b'name="text"\r\n\r\na caption' in second.body and b"nsfw,meme" in second.body
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]


def test_an_api_key_is_traded_for_a_token_and_traded_again_when_refused() -> None:
    tokens = iter(["tok-1", "tok-2", "tok-3"])

    def issue(seen: Seen) -> Reply:
        assert seen.headers["X-API-Key"] == "ds_id_secret"
        return Reply(200, {"access_token": next(tokens), "expires_in": 900, "scope": "submit read"})

    def read(seen: Seen) -> Reply:
        if seen.headers["Authorization"] == "Bearer tok-1":
            return Reply(401, error("unauthorized", "invalid token: expired"))  # e.g. rotated keys
        return Reply(200, job("k1", "succeeded"))

    with scripted({"POST /v1/auth/token": issue, "GET /v1/jobs/k1": read}) as server:
        client = Client(server.url, api_key="ds_id_secret")
        assert client.get_job("k1").succeeded
        assert [s.headers.get("Authorization") for s in server.calls("GET", "/v1/jobs/k1")] == \
            ["Bearer tok-1", "Bearer tok-2"]
        assert "Authorization" not in server.calls("POST", "/v1/auth/token")[0].headers
        client.http._token_expires = 0.0  # the token's lifetime is over: the next call trades again
        client.get_job("k1")
        assert len(server.calls("POST", "/v1/auth/token")) == 3
        assert server.calls("GET", "/v1/jobs/k1")[-1].headers["Authorization"] == "Bearer tok-3"


def test_wait_asks_for_a_long_poll_then_follows_retry_after() -> None:
    with scripted({"GET /v1/jobs/w1": [Reply(200, job("w1", "queued"), {"Retry-After": "0.3"}),
                                       Reply(200, job("w1", "running")),  # no Retry-After: poll_interval
                                       Reply(200, job("w1", "succeeded"))]}) as server:
        sleeps = Sleeps()
        done = Client(server.url, token="t", poll_interval=0.7, sleep=sleeps).wait("w1", timeout=100)
    assert done.succeeded
    waits = [int(s.query["wait"][0]) for s in server.calls("GET", "/v1/jobs/w1")]
    assert all(25 <= w <= 30 for w in waits)
    assert sleeps == [0.3, 0.7]


def test_wait_gives_up_with_the_last_state() -> None:
    running = Reply(200, job("w2", "running"), {"Retry-After": "0.2"})
    with scripted({"GET /v1/jobs/w2": [running]}) as server, pytest.raises(WaitTimeout) as timeout:
        Client(server.url, token="t").wait("w2", timeout=0.5)
    assert timeout.value.job.status == "running"
    assert len(server.calls("GET", "/v1/jobs/w2")) >= 2


def test_batches_use_the_server_endpoint_when_it_exists(tmp_path) -> None:
    (tmp_path / "a.png").write_bytes(b"\x89PNG fake a")
    body = {"id": "b1", "status_url": "/v1/batches/b1", "items": [
        {"index": 0, "job_id": "ja", "status": "queued", "error": None},
        {"index": 1, "job_id": "jb", "status": "queued", "error": None},
        {"index": 2, "job_id": None, "status": "failed", "error": {"code": "blocked_url", "message": "private"}}]}
    later = {**body, "created_at": "2026-11-27T00:00:00+00:00", "counts": {"queued": 1, "succeeded": 1, "failed": 1}}
    with scripted({"POST /v1/batches": [Reply(202, body)], "GET /v1/batches/b1": [Reply(200, later)]}) as server:
        client = Client(server.url, token="t")
        batch = client.submit_batch([tmp_path / "a.png", ("b.jpg", b"\xff\xd8 b"), "http://10.0.0.1/x.jpg"],
                                    models="nsfw")
        assert batch.id == "b1" and not batch.local
        assert batch.job_ids == ["ja", "jb"]
        assert [i.name for i in batch.items] == ["a.png", "b.jpg", "http://10.0.0.1/x.jpg"]
        assert batch.items[2].error is not None and batch.items[2].error.code == "blocked_url"
        posted = server.calls("POST", "/v1/batches")[0].body
        assert posted.count(b'name="file"') == 2 and b"http://10.0.0.1/x.jpg" in posted
        assert client.get_batch(batch).counts == {"queued": 1, "succeeded": 1, "failed": 1}


def test_a_server_batch_is_collected_whole_and_an_older_server_job_by_job() -> None:
    """wait_batch asks for the batch with ?wait= and include=jobs, again after Retry-After while any job
    runs; a server that answers without the job documents is collected one job at a time."""
    items = [{"index": 0, "job_id": "ja", "status": "succeeded", "error": None},
             {"index": 1, "job_id": None, "status": "rejected", "error": {"code": "x", "message": "y"}},
             {"index": 2, "job_id": "jb", "status": "running", "error": None}]
    running = {"id": "b2", "items": [{**items[0], "job": job("ja", "succeeded")}, items[1],
                                     {**items[2], "job": job("jb", "running")}]}
    done = {"id": "b2", "items": [{**items[0], "job": job("ja", "succeeded")}, items[1],
                                  {**items[2], "status": "succeeded", "job": job("jb", "succeeded")}]}
    batch = Batch.from_json({"id": "b2", "items": items})
    sleeps = Sleeps()
    with scripted({"GET /v1/batches/b2": [Reply(200, running, {"Retry-After": "1"}), Reply(200, done)]}) as server:
        jobs = Client(server.url, token="t", sleep=sleeps).wait_batch(batch, timeout=60)
        asked = server.calls("GET", "/v1/batches/b2")
    assert [(j.id, j.status) for j in jobs] == [("ja", "succeeded"), ("jb", "succeeded")]
    assert len(asked) == 2 and sleeps == [1.0]
    assert all(a.query["include"] == ["jobs"] and int(a.query["wait"][0]) > 0 for a in asked)

    older = {"id": "b2", "items": items}  # no "job" in the items: this server ignores include=
    with scripted({"GET /v1/batches/b2": [Reply(200, older)], "GET /v1/jobs/ja": [Reply(200, job("ja", "succeeded"))],
                   "GET /v1/jobs/jb": [Reply(200, job("jb", "failed"))]}) as server:
        jobs = Client(server.url, token="t").wait_batch(batch, timeout=60)
        assert len(server.calls("GET", "/v1/batches/b2")) == 1
    assert [(j.id, j.status) for j in jobs] == [("ja", "succeeded"), ("jb", "failed")]


def test_url_submission_on_a_server_that_only_takes_uploads() -> None:
    refused = Reply(400, error("missing_file", "send the media as a multipart file"))
    with scripted({"POST /v1/jobs": [refused]}) as s, pytest.raises(FeatureUnavailable):
        Client(s.url, token="t").submit_url("https://example.org/cat.jpg")
    sent = s.calls("POST", "/v1/jobs")[0]
    assert sent.headers["Content-Type"].startswith("multipart/form-data")
    assert b'name="url"\r\n\r\nhttps://example.org/cat.jpg' in sent.body


def test_batches_fall_back_to_one_upload_per_item_on_a_server_without_them() -> None:
    made = iter(["f1", "f2"])

    def upload(seen: Seen) -> Reply:
        if b"not media" in seen.body:
            return Reply(415, error("unsupported_media_type", "judged by its bytes"))
        return Reply(202, job(next(made), "queued"))

    with scripted({"POST /v1/jobs": upload, "GET /v1/jobs/f1": [Reply(200, job("f1", "succeeded"))],
                   "GET /v1/jobs/f2": [Reply(200, job("f2", "running"))]}) as server:
        client = Client(server.url, token="t")
        batch = client.submit_batch([("a.jpg", b"\xff\xd8 a"), ("n.txt", b"not media"), ("b.jpg", b"\xff\xd8 b")])
        assert batch.local and batch.id is None and batch.job_ids == ["f1", "f2"]
        assert batch.items[1].status == "rejected" and batch.items[1].error.code == "unsupported_media_type"
        assert len(server.calls("POST", "/v1/batches")) == 1  # asked once...
        now = client.get_batch(batch)
        assert now.counts == {"succeeded": 1, "rejected": 1, "running": 1} and not now.final
        assert len({s.headers["Idempotency-Key"] for s in server.calls("POST", "/v1/jobs")}) == 3
    assert client._batches is False  # ...and remembered: the next batch goes item by item at once
