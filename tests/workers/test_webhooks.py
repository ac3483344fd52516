"""Webhooks through a real worker: signed, retried after a failure, and refused for bad URLs."""

from __future__ import annotations

import http.server
import io
import json
import threading

import pytest

from core.webhooks import verify
from tests.conftest import free_port, png_bytes
from tests.support.processes import wait_for


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
