"""Webhooks through a real worker: signed, retried after a failure, and refused for bad URLs; and one
delivery attempt as a plain function, for a callback host whose DNS answer changed after submission."""

from __future__ import annotations

import hashlib
import http.server
import io
import ipaddress
import json
import threading

import pytest
from sqlalchemy import update

from core import url_fetch
from core.db import session_scope
from core.models import Job, JobStatus
from core.object_store import get_store
from core.submissions import NewMedia, submit
from core.webhooks import verify
from tests.conftest import free_port, jpeg_bytes, png_bytes
from tests.support.environment import apply_env
from tests.support.processes import wait_for
from workers import webhooks


@pytest.fixture()
def receiver():  # type: ignore[no-untyped-def]
    """A local endpoint that answers 500 to the first delivery and 200 after."""
    received: list[tuple[dict[str, str], bytes, int]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = 500 if not received else 200
            received.append((dict(self.headers), body, status))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def test_finished_job_is_posted_signed_and_retried(client, auth, worker, receiver, service_env):  # type: ignore[no-untyped-def]
    url, received = receiver
    response = client.post("/v1/jobs", headers=auth, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(png_bytes(color=(77, 1, 200))), "a.png"), "callback_url": url})
    assert response.status_code == 202, response.get_data(as_text=True)
    job_id = response.get_json()["id"]
    assert response.get_json()["callback_url"] == url

    wait_for(lambda: any(status == 200 for *_, status in received), 60, what="a successful delivery")
    assert received[0][2] == 500  # the first delivery failed and was retried
    headers, body, _ = received[-1]
    assert verify(service_env["WEBHOOK_SECRET"], headers["X-Deepscreen-Signature"], body)
    payload = json.loads(body)
    assert payload["event"] == "job.finished"
    assert payload["job"]["id"] == job_id and payload["job"]["status"] == "succeeded"
    assert "owner" not in payload["job"] and "nsfw" in payload["job"]["results"]
    assert received[0][0]["X-Deepscreen-Delivery"] != headers["X-Deepscreen-Delivery"]


@pytest.mark.parametrize("url", ["http://10.0.0.5/hook", "file:///etc/passwd", "http://127.0.0.2:1/x"])
def test_callback_outside_the_allow_list_is_422(client, auth, url):  # type: ignore[no-untyped-def]
    response = client.post("/v1/jobs", headers=auth, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(png_bytes()), "a.png"), "callback_url": url})
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "bad_callback_url"


def test_known_content_answered_at_once_still_calls_back(client, auth, worker, receiver):  # type: ignore[no-untyped-def]
    url, received = receiver
    data = png_bytes(color=(3, 141, 59))
    first = client.post("/v1/jobs", headers=auth, data={"file": (io.BytesIO(data), "a.png")})
    wait_for(lambda: client.get(first.get_json()["status_url"], headers=auth).get_json()["status"] == "succeeded",
             60, what="the first job")
    again = client.post("/v1/jobs", headers=auth, data={"file": (io.BytesIO(data), "a.png"), "callback_url": url})
    assert again.status_code == 200
    wait_for(lambda: any(status == 200 for *_, status in received), 60, what="the call back")
    assert json.loads(received[-1][1])["job"]["id"] == again.get_json()["id"]


def test_a_callback_name_that_now_resolves_inside_is_refused_and_never_called(  # type: ignore[no-untyped-def]
        service_env, receiver, monkeypatch):
    """DNS rebinding: the name passed the submit check (no lookup there) and at delivery resolves to
    loopback, where the receiver listens. The resolver is replaced (no DNS server for made-up names
    here); the connection itself is real. Refused (the task does not retry it); with the name in
    WEBHOOK_ALLOWED_HOSTS the same answer is used, and the request goes to that checked address with the
    Host header still naming the host."""
    url, received = receiver
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[url_fetch.IPAddress]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(url_fetch, "resolve", resolve)
    data = jpeg_bytes((40, 40), seed=9001)
    media = NewMedia(data, hashlib.sha256(data).hexdigest(), "jpeg", "image", 40, 40)
    callback = f"http://hooks.rebind.test:{port}/hook"
    job_id = submit(get_store(), "hooks", media, None, {"nsfw": "1"}, callback_url=callback).doc["id"]
    with session_scope() as session:  # finished by hand: only the delivery is under test
        session.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.SUCCEEDED))

    with apply_env({"WEBHOOK_ALLOWED_HOSTS": ""}):
        assert webhooks.send(job_id) == "refused"
    assert lookups == ["hooks.rebind.test"] and received == []

    with apply_env({"WEBHOOK_ALLOWED_HOSTS": "hooks.rebind.test"}):
        assert webhooks.send(job_id) == "retry"  # reached: the receiver answers 500 the first time
    assert len(received) == 1 and received[0][0]["Host"] == f"hooks.rebind.test:{port}"
    assert lookups == ["hooks.rebind.test"] * 2


def test_a_metadata_address_is_refused_even_for_an_allowed_host(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(url_fetch, "resolve", lambda host, port: [ipaddress.ip_address("169.254.169.254")])

    def no_connection(*args: object) -> None:
        raise AssertionError("connected to a refused address")

    monkeypatch.setattr(url_fetch, "open_socket", no_connection)
    with pytest.raises(url_fetch.UrlRejected) as refused:
        url_fetch.post("http://hooks.example.com/hook", b"{}", {}, allowed_hosts={"hooks.example.com"})
    assert refused.value.code == "url_not_allowed"
