"""Webhooks: when a job finishes, POST its document to the caller's ``callback_url``, signed.

Signature (like Stripe's): header ``X-Deepscreen-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" with WEBHOOK_SECRET>``. Delivery is at least once (retried with backoff); receivers
de-duplicate on ``X-Deepscreen-Delivery`` or the job id, and should refuse old timestamps.

Where the callback may point is checked twice: its URL when the job is submitted
(``check_callback_url``, no DNS lookup, so a submit stays fast), and every address its host resolves
to at each delivery (``core.url_fetch.post``: the connection goes to the address that was checked), so
a name that later resolves inside the network (DNS rebinding) is refused, not called.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import time
import uuid
from typing import Any

from core.settings import Settings
from core.url_fetch import UrlRejected, address_problem, parse_url, post


class CallbackRejected(ValueError):
    """The callback URL is not one this server will call."""


def check_callback_url(url: str, settings: Settings) -> str:
    """Accept an http(s) URL to an allowed host; refuse what would let a tenant reach internal services.

    The URL rules and the address rules are core.url_fetch's (one SSRF guard for the server's
    outgoing requests)."""
    if not settings.webhook_secret:
        raise CallbackRejected("webhooks are disabled on this server (WEBHOOK_SECRET is not set)")
    try:
        host = parse_url(url, "callback_url").host
    except UrlRejected as exc:
        raise CallbackRejected(exc.message) from exc
    allowed = settings.webhook_hosts
    if allowed:
        if host not in allowed:
            raise CallbackRejected(f"callback host {host!r} is not in WEBHOOK_ALLOWED_HOSTS")
        return url
    # No allow-list: refuse addresses that name this machine or a private network. A DNS name that
    # resolves to one is refused at delivery, when its addresses are looked up (``deliver``).
    if host == "localhost" or host.endswith(".localhost"):
        raise CallbackRejected("callback_url may not point at this server")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return url
    problem = address_problem(address)
    if problem:
        raise CallbackRejected(f"callback_url may not point at a private, loopback or link-local address "
                               f"({problem})")
    return url


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver does (also used by the tests)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def deliver(url: str, doc: dict[str, Any], secret: str, allowed_hosts: set[str], timeout: float = 10.0,
            event: str = "job.finished", extra: dict[str, Any] | None = None) -> int:
    """POST once; returns the HTTP status. Raises core.url_fetch.UrlRejected: ``url_not_allowed`` when the
    host now resolves to an address the guard refuses (hosts in ``allowed_hosts`` may be private, never
    a metadata address), ``url_fetch_failed`` on a network failure."""
    body = json.dumps({"event": event, "job": doc, **(extra or {})}, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "deepscreen-webhook/1",
        "X-Deepscreen-Event": event,
        "X-Deepscreen-Delivery": str(uuid.uuid4()),
        "X-Deepscreen-Signature": sign(secret, int(time.time()), body),
    }
    # No redirects: a 3xx to an internal address would undo the host check.
    return post(url, body, headers, allowed_hosts=allowed_hosts, timeout=timeout)
