"""Hostile uploads through the real API and a real worker process: every case is answered with a
4xx in the error shape or ends ``failed`` with a code (or, for odd-but-valid files, is screened);
never a 5xx, never a crashed or hung worker, never a request to a URL hidden inside a file."""

from __future__ import annotations

import http.server
import io
import threading

import pytest

from tests.conftest import free_port, png_bytes
from tests.support.processes import wait_for
from tests.web.hostile_corpus import corpus


@pytest.fixture(scope="module")
def canary(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A local HTTP server and a local file that a decoder following a playlist would touch."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = tmp_path_factory.mktemp("canary") / "secret.ts"
    secret.write_bytes(b"\x47" * 188 * 10)
    yield f"http://127.0.0.1:{server.server_address[1]}/canary.ts", str(secret), hits
    server.shutdown()


def test_hostile_corpus(client, auth, worker, canary):  # type: ignore[no-untyped-def]
    canary_url, canary_file, hits = canary
    cases = corpus(canary_url, canary_file)
    assert len(cases) >= 30
    pool_before = worker.child_pids()
    accepted: dict[str, tuple] = {}
    for case in cases:
        response = client.post("/v1/jobs", headers=auth, content_type="multipart/form-data",
                               data={"file": (io.BytesIO(case.data), case.filename), **case.form})
        assert response.status_code < 500, (case.name, response.get_data(as_text=True)[:300])
        body = response.get_json()
        if case.expect == "reject" or (case.expect == "bad" and response.status_code >= 400):
            assert response.status_code == (case.status or response.status_code) >= 400, (case.name, body)
            assert body["error"]["code"] in case.codes and body["error"]["message"], (case.name, body)
        else:
            assert response.status_code in (200, 202), (case.name, body)
            accepted[case.name] = (case, body["status_url"])

    def finished(url: str):  # type: ignore[no-untyped-def]
        job = client.get(url, headers=auth).get_json()
        return job if job["status"] in ("succeeded", "failed") else None

    for name, (case, url) in accepted.items():
        job = wait_for(lambda url=url: finished(url), 120, what=f"the job for {name!r}")
        if case.expect in ("fail", "bad"):
            assert job["status"] == "failed", (name, job)
            assert job["error"]["code"] in case.codes, (name, job["error"])
        else:
            assert job["status"] == "succeeded", (name, job)
            assert 0.0 <= job["results"]["nsfw"]["score"] <= 1.0

    assert hits == [], "a decoder followed a reference inside an uploaded file"
    assert worker.proc.poll() is None
    assert worker.child_pids() == pool_before, "a pool process died while screening the corpus"
    ok = client.post("/v1/jobs", headers=auth, data={"file": (io.BytesIO(png_bytes(color=(1, 99, 7))), "z.png")})
    assert wait_for(lambda: finished(ok.get_json()["status_url"]), 60)["status"] == "succeeded"


def test_invalid_utf8_text_is_422(client, auth):  # type: ignore[no-untyped-def]
    boundary = "xYzZY"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\n".encode() + b"caf\xe9 \xff\xfe"
        + f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
          "Content-Type: image/png\r\n\r\n".encode() + png_bytes() + f"\r\n--{boundary}--\r\n".encode()
    )
    response = client.post("/v1/jobs", headers=auth, data=body,
                           content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid_text"


def test_json_body_instead_of_multipart(client, auth):  # type: ignore[no-untyped-def]
    response = client.post("/v1/jobs", headers=auth, json={"file": "aGVsbG8="})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "missing_file"
