"""gunicorn's own refusals (request line or headers too large, a malformed request line) come back in
the API's error shape from the worker class `deepscreen web` runs (web/gunicorn_worker.py)."""

from __future__ import annotations

import json
import socket

import pytest

from tests.conftest import free_port
from tests.support.processes import Gunicorn


@pytest.fixture(scope="module")
def server(service_env, tmp_path_factory):  # type: ignore[no-untyped-def]
    web = Gunicorn({}, tmp_path_factory.mktemp("gunicorn-errors") / "gunicorn.log", free_port(), workers=1)
    web.start()
    yield web
    web.stop()


def raw_request(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(("request_bytes", "status", "code"), [
    (b"GET /v1/jobs?limit=" + b"9" * 6000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-F%d: y\r\n" % i for i in range(120)) + b"\r\n",
     431, "headers_too_large"),
    (b"GET /v1/jobs HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_request"),
])
def test_gunicorn_refusals_are_json(server, request_bytes: bytes, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    got, headers, body = raw_request(server.url, request_bytes)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"]
