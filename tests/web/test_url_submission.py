"""POST /v1/jobs with ``url``: the server fetches it under the SSRF guard (core/url_fetch.py).

Against a real loopback HTTP server, with the guard on (loopback refused) and off
(URL_FETCH_ALLOWED_HOSTS lists the host). DNS tricks are played by replacing the guard's resolver,
and where the connection goes is seen by recording ``socket.create_connection``.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import socket
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from core import url_fetch
from tests.conftest import jpeg_bytes, png_bytes
from tests.support.processes import wait_for
from tests.web.media_server import MediaServer, start

PNG = png_bytes((80, 60), (10, 200, 30))


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    server = MediaServer(routes={"/img.png": PNG, "/page.html": b"<html><script>x</script></html>",
                                 "/fake.png": b"<html>not a png</html>", "/photo.jpg": jpeg_bytes((96, 64), 77)},
                         types={"/page.html": "text/html", "/photo.jpg": "image/jpeg"})
    httpd = start(server)
    yield server
    httpd.shutdown()


def client_with(**overrides):  # type: ignore[no-untyped-def]
    from core.settings import load_settings
    from web.app import create_app

    return create_app(load_settings(**overrides)).test_client()


def post_url(client, headers, url: str, **form: str):  # type: ignore[no-untyped-def]
    return client.post("/v1/jobs", headers=headers, data={"url": url, **form}, content_type="multipart/form-data")


def error_of(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return body["error"]


@pytest.fixture()
def guarded(service_env):  # type: ignore[no-untyped-def]
    return client_with(url_fetch_allowed_hosts="")


@pytest.fixture()
def open_to_loopback(service_env):  # type: ignore[no-untyped-def]
    return client_with(url_fetch_allowed_hosts="127.0.0.1,pinned.test,redirector.test")


@pytest.fixture()
def connections(monkeypatch) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    """Every address the guard connects to (core.url_fetch.open_socket is its only way out); anything
    but loopback is refused, as if there were no network."""
    made: list[tuple[str, int]] = []
    real = url_fetch.open_socket

    def record(address, port, timeout):  # type: ignore[no-untyped-def]
        made.append((str(address), port))
        if not address.is_loopback:
            raise ConnectionRefusedError(f"test: no route to {address}")
        return real(address, port, timeout)

    monkeypatch.setattr(url_fetch, "open_socket", record)
    return made


def fake_dns(monkeypatch, answers: dict[str, list[list[str]]]) -> list[str]:  # type: ignore[no-untyped-def]
    """Resolve the named hosts to the given answers, one list per lookup (the last repeats)."""
    asked: list[str] = []
    real = url_fetch.resolve

    def resolve(host: str, port: int):  # type: ignore[no-untyped-def]
        asked.append(host)
        if host not in answers:
            return real(host, port)
        queue = answers[host]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return [ipaddress.ip_address(a) for a in answer]

    monkeypatch.setattr(url_fetch, "resolve", resolve)
    return asked


# ---- the guard on: nothing inside is reachable ---------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/img.png",
    "http://localhost:{port}/img.png",  # a real DNS name (the system resolver) that is loopback
    "http://127.1:{port}/img.png",  # inet_aton shorthand
    "http://2130706433:{port}/img.png",  # 127.0.0.1 as one number
    "http://[::1]:{port}/img.png",
    "http://[::ffff:127.0.0.1]:{port}/img.png",  # IPv4-mapped IPv6
    "http://0.0.0.0:{port}/img.png",
])
def test_guard_refuses_loopback_however_written(guarded, auth, media, url) -> None:  # type: ignore[no-untyped-def]
    before = len(media.seen)
    error = error_of(post_url(guarded, auth, url.format(port=media.port)), 422)
    assert error["code"] == "url_not_allowed", error
    assert len(media.seen) == before  # refused before any connection


def test_a_name_that_resolves_to_loopback_is_refused(guarded, auth, media, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    asked = fake_dns(monkeypatch, {"images.example.test": [["127.0.0.1"]]})
    before = len(media.seen)
    error = error_of(post_url(guarded, auth, f"http://images.example.test:{media.port}/img.png"), 422)
    assert error["code"] == "url_not_allowed" and "loopback" in error["message"]
    assert asked == ["images.example.test"] and len(media.seen) == before


def test_one_internal_answer_among_public_ones_is_enough_to_refuse(guarded, auth, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fake_dns(monkeypatch, {"mixed.example.test": [["93.184.216.34", "10.0.0.7"]]})
    assert error_of(post_url(guarded, auth, "http://mixed.example.test/x.png"), 422)["code"] == "url_not_allowed"


def test_dns_is_resolved_once_and_the_connection_goes_to_the_checked_address(  # type: ignore[no-untyped-def]
        guarded, auth, media, monkeypatch, connections) -> None:
    """Rebinding: the first answer is public, any later one loopback. The guard asks once and connects
    to what it checked (refused here, as there is no network), never to the loopback server."""
    asked = fake_dns(monkeypatch, {"rebind.example.test": [["93.184.216.34"], ["127.0.0.1"]]})
    before = len(media.seen)
    error = error_of(post_url(guarded, auth, f"http://rebind.example.test:{media.port}/img.png"), 422)
    assert error["code"] == "url_fetch_failed"
    assert asked == ["rebind.example.test"]
    assert connections == [("93.184.216.34", media.port)]
    assert len(media.seen) == before


def test_metadata_addresses_stay_refused_even_when_allowed(service_env, auth, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client = client_with(url_fetch_allowed_hosts="169.254.169.254,meta.test,metadata.google.internal")
    fake_dns(monkeypatch, {"meta.test": [["169.254.169.254"]]})
    for url in ("http://169.254.169.254/latest/meta-data/", "http://meta.test/", "http://[fd00:ec2::254]/",
                "http://metadata.google.internal/computeMetadata/v1/"):
        assert error_of(post_url(client, auth, url), 422)["code"] == "url_not_allowed", url


@pytest.mark.parametrize("address, refused", [
    ("127.0.0.1", True), ("10.1.2.3", True), ("172.16.0.1", True), ("192.168.1.1", True),
    ("169.254.1.1", True), ("100.64.0.1", True), ("0.0.0.0", True), ("224.0.0.1", True),
    ("239.255.255.250", True), ("240.0.0.1", True), ("255.255.255.255", True), ("198.18.0.1", True),
    ("192.0.2.1", True), ("::1", True), ("::", True), ("fe80::1", True), ("fc00::1", True), ("fd12::1", True),
    ("ff02::1", True), ("fec0::1", True), ("::ffff:127.0.0.1", True), ("::ffff:10.0.0.1", True),
    ("64:ff9b::7f00:1", True),  # NAT64 of 127.0.0.1
    ("2002:7f00:1::", True),  # 6to4 of 127.0.0.1
    ("::127.0.0.1", True),  # IPv4-compatible (deprecated)
    ("2001:db8::1", True),  # documentation
    ("93.184.216.34", False), ("8.8.8.8", False), ("2606:4700:4700::1111", False),
    ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8: inside ::/8, reserved, so refused too (conservative)
])
def test_address_rules(address: str, refused: bool) -> None:
    assert (url_fetch.address_problem(ipaddress.ip_address(address)) is not None) is refused


@pytest.mark.parametrize("url, code", [
    ("ftp://example.com/a.png", "bad_url"),
    ("file:///etc/passwd", "bad_url"),
    ("http://user:pw@example.com/a.png", "bad_url"),
    ("http:///nohost", "bad_url"),
    ("http://example.com:99999/", "bad_url"),
    ("not a url", "bad_url"),
    ("http://example.com/" + "a" * 2000, "bad_url"),
    ("http://no-such-host.invalid/a.png", "url_fetch_failed"),
])
def test_malformed_or_unresolvable_urls(guarded, auth, url, code) -> None:  # type: ignore[no-untyped-def]
    assert error_of(post_url(guarded, auth, url), 422)["code"] == code


# ---- the guard off for the test's host: what a fetch checks -------------------------------------------

def test_an_allowed_loopback_url_is_fetched_and_screened(open_to_loopback, auth, media, worker) -> None:  # type: ignore[no-untyped-def]
    response = post_url(open_to_loopback, auth, f"{media.url}/photo.jpg")
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert job["media"]["sha256"] == hashlib.sha256(media.routes["/photo.jpg"]).hexdigest()
    assert job["media"]["format"] == "jpeg" and response.headers["Retry-After"] == "1"
    done = wait_for(lambda: (b := open_to_loopback.get(job["status_url"], headers=auth).get_json())["status"]
                    in ("succeeded", "failed") and b, 60, what="the URL job")
    assert done["status"] == "succeeded" and done["results"]["nsfw"]["model_version"]


def test_the_connection_is_pinned_to_the_checked_address(open_to_loopback, auth, media, monkeypatch,  # type: ignore[no-untyped-def]
                                                          connections) -> None:
    """``pinned.test`` exists only in the guard's resolver: the request can only arrive if the
    connection went to the address the guard checked, with the name in the Host header."""
    asked = fake_dns(monkeypatch, {"pinned.test": [["127.0.0.1"], ["10.9.9.9"]]})
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("pinned.test", media.port)
    response = post_url(open_to_loopback, auth, f"http://pinned.test:{media.port}/img.png")
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["media"]["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert asked == ["pinned.test"] and connections == [("127.0.0.1", media.port)]
    assert media.seen[-1].path == "/img.png" and media.seen[-1].host == f"pinned.test:{media.port}"


def test_a_redirect_into_loopback_is_refused(open_to_loopback, auth, media, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The first hop is allowed; its redirect to a loopback name that is not is re-checked and refused."""
    fake_dns(monkeypatch, {"redirector.test": [["127.0.0.1"]]})
    for target in (f"http://localhost:{media.port}/img.png", f"http://[::1]:{media.port}/img.png",
                   "http://169.254.169.254/latest/meta-data/"):
        before = len(media.seen)
        url = f"http://redirector.test:{media.port}/redirect?to={target}"
        error = error_of(post_url(open_to_loopback, auth, url), 422)
        assert error["code"] == "url_not_allowed", (target, error)
        assert media.paths()[before:] == ["/redirect"]  # the target was never requested


def chain(media: MediaServer, hops: int, status: int = 302) -> str:
    url = f"{media.url}/img.png"
    for _ in range(hops):
        url = f"{media.url}/redirect?status={status}&to={quote(url, safe='')}"
    return url


def test_redirects_are_followed_checked_and_bounded(open_to_loopback, auth, media) -> None:  # type: ignore[no-untyped-def]
    relative = post_url(open_to_loopback, auth, f"{media.url}/redirect?to=/img.png")
    assert relative.status_code in (200, 202), relative.get_json()
    assert relative.get_json()["media"]["sha256"] == hashlib.sha256(PNG).hexdigest()
    for status in (301, 303, 307, 308):
        assert post_url(open_to_loopback, auth, chain(media, 1, status)).status_code in (200, 202), status
    before = len(media.seen)
    assert post_url(open_to_loopback, auth, chain(media, 3)).status_code in (200, 202)
    assert media.paths()[before:] == ["/redirect"] * 3 + ["/img.png"]
    assert error_of(post_url(open_to_loopback, auth, chain(media, 4)), 422)["code"] == "url_fetch_failed"
    ftp = f"{media.url}/redirect?to={quote('ftp://example.com/x', safe='')}"
    assert error_of(post_url(open_to_loopback, auth, ftp), 422)["code"] == "bad_url"


def test_size_limit_is_enforced_while_streaming(service_env, auth, media) -> None:  # type: ignore[no-untyped-def]
    client = client_with(url_fetch_allowed_hosts="127.0.0.1", max_upload_bytes=50_000)
    started = time.monotonic()
    error = error_of(post_url(client, auth, f"{media.url}/stream?bytes=50000000"), 422)
    assert error["code"] == "url_too_large" and error["details"]["max_bytes"] == 50_000
    assert time.monotonic() - started < 5  # stopped reading at the limit, not after 50 MB
    error = error_of(post_url(client, auth, f"{media.url}/declared?bytes=60000"), 422)
    assert error["code"] == "url_too_large"
    assert post_url(client, auth, f"{media.url}/img.png").status_code in (200, 202)  # small is fine


def test_slow_servers_hit_the_time_limits(service_env, auth, media) -> None:  # type: ignore[no-untyped-def]
    client = client_with(url_fetch_allowed_hosts="127.0.0.1", url_fetch_timeout_seconds=1.0,
                         url_fetch_deadline_seconds=2.0)
    for path in ("/drip", "/silent"):  # each read is quick but the whole is endless / nothing comes
        started = time.monotonic()
        error = error_of(post_url(client, auth, f"{media.url}{path}"), 422)
        elapsed = time.monotonic() - started
        assert error["code"] == "url_fetch_failed" and "too long" in error["message"], error
        assert elapsed < 3.5, (path, elapsed)


def test_non_media_is_refused_as_uploads_are(open_to_loopback, auth, media) -> None:  # type: ignore[no-untyped-def]
    html = error_of(post_url(open_to_loopback, auth, f"{media.url}/page.html"), 415)
    assert html["code"] == "unsupported_media_type" and html["details"]["content_type"] == "text/html"
    lying = error_of(post_url(open_to_loopback, auth, f"{media.url}/fake.png"), 415)  # image/png, HTML bytes
    assert lying["code"] == "unsupported_media_type" and "bytes" in lying["message"]
    assert error_of(post_url(open_to_loopback, auth, f"{media.url}/missing.png"), 422)["code"] == "url_fetch_failed"


def test_file_and_url_together_and_the_switch(service_env, auth, media) -> None:  # type: ignore[no-untyped-def]
    client = client_with(url_fetch_allowed_hosts="127.0.0.1")
    both = client.post("/v1/jobs", headers=auth, content_type="multipart/form-data",
                       data={"url": f"{media.url}/img.png", "file": (io.BytesIO(PNG), "a.png")})
    assert error_of(both, 400)["code"] == "file_and_url"
    off = client_with(url_fetch_allowed_hosts="127.0.0.1", url_submissions=False)
    before = len(media.seen)
    # What clients read as "this server takes uploads only".
    assert error_of(post_url(off, auth, f"{media.url}/img.png"), 400)["code"] == "missing_file"
    assert len(media.seen) == before


def test_slow_fetches_hold_an_upload_slot_and_a_full_server_says_busy(service_env, auth, media, monkeypatch):  # type: ignore[no-untyped-def]
    """WEB_UPLOAD_SLOTS bounds the bytes a process holds at once; past the wait, 503 server_busy."""
    import threading

    from web import uploads

    monkeypatch.setattr(uploads, "SLOT_WAIT_SECONDS", 0.3)
    client = client_with(url_fetch_allowed_hosts="127.0.0.1", web_upload_slots=1, url_fetch_deadline_seconds=2.0)
    slow: list = []
    holder = threading.Thread(target=lambda: slow.append(post_url(client, auth, f"{media.url}/silent")))
    holder.start()
    time.sleep(0.5)
    busy = client.post("/v1/jobs", headers=auth, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(png_bytes((17, 17))), "a.png")})
    assert error_of(busy, 503)["code"] == "server_busy" and busy.headers["Retry-After"] == "1"
    holder.join(10)
    assert slow[0].get_json()["error"]["code"] == "url_fetch_failed"
    again = client.post("/v1/jobs", headers=auth, content_type="multipart/form-data",
                        data={"file": (io.BytesIO(png_bytes((17, 17))), "a.png")})
    assert again.status_code in (200, 202)
