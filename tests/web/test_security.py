"""Hardening: security headers, the CORS allow-list, scopes, JWT algorithm confusion, no secrets in logs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import shlex
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import free_port, png_bytes
from tests.support.processes import Gunicorn, wait_for

CSP = "default-src 'none'; frame-ancestors 'none'"


def token_for(subject: str, scopes: tuple[str, ...]) -> dict[str, str]:
    from core.settings import get_settings
    from core.tokens import issue_token

    return {"Authorization": f"Bearer {issue_token(get_settings(), subject, scopes)}"}


def assert_error(response, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == code


def upload() -> dict:
    return {"data": {"file": (io.BytesIO(png_bytes()), "x.png")}, "content_type": "multipart/form-data"}


@pytest.mark.parametrize("method, path, authenticated, status", [
    ("get", "/health", False, 200),
    ("get", "/openapi.json", False, 200),
    ("get", "/v1/jobs", False, 401),
    ("get", "/v1/jobs", True, 200),
    ("get", "/v1/models", True, 200),
    ("get", "/status/nope", True, 404),
    ("get", "/no/such/route", True, 404),
    ("delete", "/v1/jobs", True, 405),
    ("post", "/v1/text", True, 422),
])
def test_every_json_response_is_hardened(client, auth, method, path, authenticated, status) -> None:  # type: ignore[no-untyped-def]
    response = getattr(client, method)(path, headers=auth if authenticated else {})
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Frame-Options"] == "DENY"
    if authenticated:
        assert response.headers["Cache-Control"] == "no-store"
    if status == 405:
        assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_metrics_text_is_hardened_too(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/metrics")
    assert response.mimetype == "text/plain"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.fixture()
def cors_client(service_env):  # type: ignore[no-untyped-def]
    from core.settings import load_settings
    from web.app import create_app

    settings = load_settings(cors_origins="https://screen.example, chrome-extension://abcdefghijklmnop")
    return create_app(settings).test_client()


@pytest.mark.parametrize("origin", ["https://screen.example", "chrome-extension://abcdefghijklmnop"])
def test_cors_allows_a_listed_origin(cors_client, auth, origin) -> None:  # type: ignore[no-untyped-def]
    response = cors_client.get("/v1/models", headers={**auth, "Origin": origin})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers
    preflight = cors_client.options("/v1/jobs", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, idempotency-key",
    })
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert {"authorization", "idempotency-key"} <= {
        h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}


@pytest.mark.parametrize("origin", ["https://evil.example", "https://screen.example.evil.net", "http://screen.example",
                                    "null"])
def test_cors_ignores_any_other_origin(cors_client, client, auth, origin) -> None:  # type: ignore[no-untyped-def]
    for c in (cors_client, client):  # listed origins elsewhere, and the default of none
        response = c.get("/v1/models", headers={**auth, "Origin": origin})
        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response.headers
        preflight = c.options("/v1/jobs", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in preflight.headers


@pytest.mark.parametrize("bad", ["*", "https://*.example.com", "https://a.example/path", "a.example", "https://^x$"])
def test_cors_origins_must_be_exact(service_env, bad) -> None:  # type: ignore[no-untyped-def]
    from core.settings import SettingsError, load_settings
    from web.app import create_app

    with pytest.raises(SettingsError, match="CORS_ORIGINS"):
        create_app(load_settings(cors_origins=f"https://ok.example,{bad}"))


def test_scopes_are_enforced(client, subject) -> None:  # type: ignore[no-untyped-def]
    read_only, submit_only = token_for(subject, ("read",)), token_for(subject, ("submit",))
    assert_error(client.post("/v1/jobs", headers=read_only, **upload()), 403, "forbidden")
    assert_error(client.post("/v1/text", headers=read_only, json={"texts": ["hi"]}), 403, "forbidden")
    for path in ("/v1/jobs", "/v1/models", "/status/x", "/v1/jobs/x", f"/v1/lookup/{'0' * 64}"):
        assert_error(client.get(path, headers=submit_only), 403, "forbidden")
    assert client.get("/v1/jobs", headers=read_only).status_code == 200
    assert client.post("/v1/jobs", headers=submit_only, **upload()).status_code in (200, 202)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(subject: str) -> dict:
    from core.settings import get_settings

    cfg, now = get_settings(), int(time.time())
    return {"sub": subject, "iss": cfg.jwt_issuer, "aud": cfg.jwt_audience, "iat": now, "nbf": now,
            "exp": now + 300, "scope": "submit read admin"}


def test_algorithm_confusion_is_refused(client, service_env) -> None:  # type: ignore[no-untyped-def]
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    rs256 = jwt.encode(_claims("mallory"), private, algorithm="RS256")
    # HS256 keyed with the public PEM (pyjwt rightly refuses to sign this, so it is built by hand).
    body = _b64(json.dumps(_claims("mallory")).encode())
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{body}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    hs256_pem = f"{signing_input}.{_b64(signature)}"
    none = f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{body}."
    for forged in (rs256, hs256_pem, none):
        headers = {"Authorization": f"Bearer {forged}"}
        assert_error(client.get("/v1/jobs", headers=headers), 401, "unauthorized")
        assert_error(client.post("/v1/jobs", headers=headers, **upload()), 401, "unauthorized")


@pytest.fixture()
def api_key(service_env, subject) -> str:  # type: ignore[no-untyped-def]
    from core.api_keys import create_api_key
    from core.db import session_scope

    with session_scope() as session:
        return create_api_key(session, subject)


def secrets_in(text: str, *secrets: str) -> list[str]:
    """Which secrets (or a telling part of one: a JWT's signature, a key's secret half) occur in text."""
    parts = {part for secret in secrets for part in (secret, secret.split(".")[-1], secret.split("_")[-1])}
    parts = {part for part in parts if len(part) >= 16}
    return sorted(p for p in parts if p in text)


def test_tokens_and_keys_stay_out_of_in_process_logs(client, api_key, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    token = client.post("/v1/auth/token", headers={"X-API-Key": api_key}).get_json()["access_token"]
    client.post("/v1/auth/token", json={"api_key": api_key})
    bearer = {"Authorization": f"Bearer {token}"}
    client.get("/v1/jobs", headers=bearer)
    client.post("/v1/jobs", headers=bearer, **upload())
    client.get(f"/v1/jobs?cursor={token}", headers=bearer)
    # What a careless log line would leak: the filter must catch it wherever it is logged from.
    logging.getLogger("web.jobs").warning("request headers %s", {"Authorization": f"Bearer {token}"})
    logging.getLogger("celery").error("retrying with key=%s token %s", api_key, token)
    try:
        raise RuntimeError(f"upstream refused {token}")
    except RuntimeError:
        logging.getLogger("web.errors").exception("unhandled error")
    assert caplog.records and "[REDACTED]" in caplog.text
    assert secrets_in(caplog.text, token, api_key) == []
    assert all(not secrets_in(r.getMessage(), token, api_key) for r in caplog.records)


def test_tokens_and_keys_stay_out_of_gunicorns_access_log(service_env, api_key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    log_format = '%(h)s "%(r)s" %(s)s auth="%({authorization}i)s" key="%({x-api-key}i)s"'
    args = f"--access-logfile - --access-logformat {shlex.quote(log_format)}"
    server = Gunicorn({"GUNICORN_CMD_ARGS": args}, tmp_path / "gunicorn.log", free_port(), workers=1)
    server.start()
    try:
        issued = requests.post(f"{server.url}/v1/auth/token", headers={"X-API-Key": api_key}, timeout=10)
        token = issued.json()["access_token"]
        requests.get(f"{server.url}/v1/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        requests.get(f"{server.url}/v1/jobs?access_token={token}", timeout=10)
        requests.get(f"{server.url}/v1/jobs", headers={"Authorization": f"Bearer {token}x"}, timeout=10)
        wait_for(lambda: server.log().count('auth="') >= 4, 10, what="the access log lines")
    finally:
        server.stop()
    log = server.log()
    assert 'auth="Bearer [REDACTED]"' in log and 'key="[REDACTED]"' in log and "GET /v1/jobs" in log
    assert secrets_in(log, token, api_key) == []
