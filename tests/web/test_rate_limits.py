"""Rate limits hold across gunicorn worker processes, per subject: counted in Redis in service mode,
in a SQLite file in DATA_DIR in the embedded mode (no Redis)."""

from __future__ import annotations

import json
import re
import socket
import time
from collections import Counter
from dataclasses import dataclass

import pytest
import requests

from tests.conftest import free_port
from tests.support.processes import Gunicorn, wait_for

LIMIT, WORKERS, ROUNDS = 5, 3, 4


# The embedded mode: every service URL empty, so the defaults (SQLite, filesystem broker, no Redis) apply.
EMBEDDED = {"DATABASE_URL": "", "BROKER_URL": "", "REDIS_URL": "", "RESULT_BACKEND": "", "STORAGE_URL": ""}


@pytest.fixture(scope="module", params=["service", "embedded"])
def three_workers(request, service_env, tmp_path_factory):  # type: ignore[no-untyped-def]
    # %(p)s is the worker's pid in the access log: it shows which process answered each request.
    env = {"RATE_LIMIT_DEFAULT": f"{LIMIT}/minute",
           "GUNICORN_CMD_ARGS": "--access-logfile - --access-logformat 'served-by=%(p)s %(s)s %(U)s'"}
    if request.param == "embedded":
        from core.migrate import upgrade

        data_dir = tmp_path_factory.mktemp("embedded")
        upgrade(f"sqlite:///{data_dir / 'deepscreen.db'}")
        env |= EMBEDDED | {"DATA_DIR": str(data_dir)}
    # sync workers: each takes one connection at a time, which is how the test spreads requests over
    # every process (a gthread worker would accept them all).
    server = Gunicorn(env, tmp_path_factory.mktemp("limits") / "gunicorn.log", free_port(), workers=WORKERS,
                      worker_class="sync")
    server.start()
    yield server
    server.stop()


def bearer(subject: str) -> dict[str, str]:
    from core.settings import get_settings
    from core.tokens import issue_token

    return {"Authorization": f"Bearer {issue_token(get_settings(), subject)}"}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: dict


def one_request_per_worker(url: str, headers: dict[str, str]) -> list[Reply]:
    """WORKERS requests, each to a different worker: a sync worker that has accepted a connection
    waits for the rest of its request, so while every request is held half-sent, each free worker
    takes exactly one."""
    host, port = url.removeprefix("http://").split(":")
    head = "GET /v1/jobs HTTP/1.1\r\nHost: test\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sockets = [socket.create_connection((host, int(port)), timeout=10) for _ in range(WORKERS)]
    for sock in sockets:
        sock.sendall(head.encode())
    time.sleep(0.3)  # let every worker accept one
    replies = []
    for sock in sockets:
        with sock:
            sock.sendall(b"Connection: close\r\n\r\n")
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        top, _, body = raw.partition(b"\r\n\r\n")
        status_line, *lines = top.decode("latin-1").split("\r\n")
        fields = dict(line.split(": ", 1) for line in lines)
        replies.append(Reply(int(status_line.split()[1]), fields, json.loads(body)))
    return replies


def test_limit_holds_across_workers_and_only_for_that_subject(three_workers, subject) -> None:  # type: ignore[no-untyped-def]
    headers = bearer(subject)
    replies = [r for _ in range(ROUNDS) for r in one_request_per_worker(three_workers.url, headers)]

    assert Counter(r.status for r in replies) == {200: LIMIT, 429: ROUNDS * WORKERS - LIMIT}
    for r in replies:
        if r.status == 429:
            assert r.headers["Content-Type"] == "application/json"
            assert r.body["error"]["code"] == "rate_limited" and r.body["error"]["message"]
            assert r.body["error"]["details"] == {}
            assert int(r.headers["Retry-After"]) > 0

    url = f"{three_workers.url}/v1/jobs"
    other = requests.get(url, headers=bearer(f"{subject}-other"), timeout=10)
    assert other.status_code == 200 and other.headers["X-RateLimit-Remaining"] == str(LIMIT - 1)
    assert requests.get(f"{three_workers.url}/health", timeout=10).status_code == 200  # exempt

    pattern = re.compile(r"served-by=<(\d+)> (\d+) /v1/jobs")
    wait_for(lambda: len(pattern.findall(three_workers.log())) > ROUNDS * WORKERS, 10, what="the access log")
    pids = {pid for pid, _ in pattern.findall(three_workers.log())}
    # Every process answered, yet only LIMIT got through in all: the count is shared (a per-process
    # in-memory count, the embedded mode's before, let up to WORKERS x LIMIT through).
    assert len(pids) == WORKERS, pids
