"""Callback URL rules and webhook signatures."""

from __future__ import annotations

import time

import pytest

from core.settings import load_settings
from core.webhooks import CallbackRejected, check_callback_url, sign, verify


def open_settings():  # type: ignore[no-untyped-def]
    """Webhooks on, no allow-list (the session's service settings set one; these rules are without it)."""
    return load_settings(webhook_secret="s", webhook_allowed_hosts="")


@pytest.mark.parametrize("url", ["https://hooks.example.com/deepscreen", "http://93.184.216.34:8080/cb?x=1"])
def test_public_http_urls_are_accepted(url: str) -> None:
    assert check_callback_url(url, open_settings()) == url


@pytest.mark.parametrize("url, reason", [
    ("ftp://example.com/x", "http"),
    ("https://user:pw@example.com/x", "credentials"),
    ("http:///nohost", "http"),
    ("http://localhost:8000/admin", "this server"),
    ("http://127.0.0.1/", "private"),
    ("http://10.1.2.3/", "private"),
    ("http://169.254.169.254/latest/meta-data", "private"),
    ("http://[::1]/", "private"),
    ("https://example.com/" + "a" * 2000, "longer"),
])
def test_internal_or_malformed_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(CallbackRejected, match=reason):
        check_callback_url(url, open_settings())


def test_allow_list_is_exact() -> None:
    settings = load_settings(webhook_secret="s", webhook_allowed_hosts="hooks.example.com, 127.0.0.1")
    assert check_callback_url("http://127.0.0.1:9000/cb", settings)
    with pytest.raises(CallbackRejected, match="WEBHOOK_ALLOWED_HOSTS"):
        check_callback_url("https://hooks.example.com.evil.net/", settings)


def test_webhooks_need_a_secret() -> None:
    with pytest.raises(CallbackRejected, match="WEBHOOK_SECRET"):
        check_callback_url("https://example.com/", load_settings(webhook_secret=""))


def test_signature_round_trip_and_tampering() -> None:
    now = int(time.time())
    header = sign("k", now, b'{"a":1}')
    assert verify("k", header, b'{"a":1}')
    assert not verify("k", header, b'{"a":2}')
    assert not verify("other", header, b'{"a":1}')
    assert not verify("k", sign("k", now - 3600, b"{}"), b"{}")  # too old: a replay
    assert not verify("k", "garbage", b"{}")
