"""Personal (extension) API keys: limited scopes, their own rate limit, an expiry, revocation that
stops the user at once, and CORS for a configured chrome-extension:// origin."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import requests
from click.testing import CliRunner

from tests.conftest import free_port, png_bytes
from tests.support.processes import Gunicorn

EXTENSION = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"


def make_key(subject: str, scopes: tuple[str, ...] = ("submit", "read"), rate_limit: str | None = None,
             expires_in: timedelta | None = None) -> str:
    from core.api_keys import create_api_key
    from core.db import session_scope

    expires_at = datetime.now(UTC) + expires_in if expires_in is not None else None
    with session_scope() as session:
        return create_api_key(session, subject, scopes, rate_limit=rate_limit, expires_at=expires_at)


def trade(client, key: str):  # type: ignore[no-untyped-def]
    return client.post("/v1/auth/token", headers={"X-API-Key": key})


def bearer_for(client, key: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    response = trade(client, key)
    assert response.status_code == 200, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def error_code(response, status: int) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]["code"]


def revoke(key: str) -> None:
    from core.api_keys import revoke_api_key
    from core.db import session_scope

    with session_scope() as session:
        assert revoke_api_key(session, key.split("_")[1])


def upload() -> dict:
    return {"data": {"file": (io.BytesIO(png_bytes((33, 22))), "x.png")}, "content_type": "multipart/form-data"}


def test_the_token_names_its_key_and_carries_its_scopes(client, subject) -> None:  # type: ignore[no-untyped-def]
    key = make_key(subject, ("submit", "read"), rate_limit="100/minute", expires_in=timedelta(days=30))
    body = trade(client, key).get_json()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["key_id"] == key.split("_")[1] and claims["sub"] == subject
    assert claims["scope"] == "submit read" == body["scope"]
    read_only = make_key(subject, ("read",))
    headers = bearer_for(client, read_only)
    assert client.get("/v1/jobs", headers=headers).status_code == 200
    assert error_code(client.post("/v1/jobs", headers=headers, **upload()), 403) == "forbidden"
    assert error_code(client.post("/v1/batches", headers=headers, **upload()), 403) == "forbidden"


def test_each_key_has_its_own_rate_limit(client, subject) -> None:  # type: ignore[no-untyped-def]
    limited = make_key(subject, rate_limit="3/minute")
    headers = bearer_for(client, limited)
    for _ in range(3):
        assert client.get("/v1/jobs", headers=headers).status_code == 200
    refused = client.get("/v1/jobs", headers=headers)
    assert error_code(refused, 429) == "rate_limited"
    assert refused.get_json()["error"]["details"] == {"limit": "3/minute", "scope": "api_key"}
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    # A fresh token from the same key is the same key: still limited.
    assert client.get("/v1/jobs", headers=bearer_for(client, limited)).status_code == 429
    # The same person's other key, and tokens not from a key, are counted apart.
    assert client.get("/v1/jobs", headers=bearer_for(client, make_key(subject))).status_code == 200


def test_an_expired_key_and_its_tokens_stop_working(client, subject) -> None:  # type: ignore[no-untyped-def]
    assert error_code(trade(client, make_key(subject, expires_in=timedelta(seconds=-1))), 401) == "unauthorized"
    short = make_key(subject, expires_in=timedelta(seconds=2))
    issued = trade(client, short).get_json()
    assert 1 <= issued["expires_in"] <= 2  # never outlives its key
    claims = jwt.decode(issued["access_token"], options={"verify_signature": False})
    assert claims["exp"] <= int(time.time()) + 2
    headers = {"Authorization": f"Bearer {issued['access_token']}"}
    assert client.get("/v1/jobs", headers=headers).status_code == 200
    time.sleep(2.5)
    # Within pyjwt's leeway the token itself would still pass: it is the key's expiry that refuses it.
    assert error_code(client.get("/v1/jobs", headers=headers), 401) == "unauthorized"
    assert error_code(trade(client, short), 401) == "unauthorized"


def test_revoking_a_key_stops_its_tokens_at_once(client, subject) -> None:  # type: ignore[no-untyped-def]
    key = make_key(subject)
    headers = bearer_for(client, key)
    assert client.get("/v1/jobs", headers=headers).status_code == 200
    revoke(key)
    response = client.get("/v1/jobs", headers=headers)
    assert error_code(response, 401) == "unauthorized" and "revoked" in response.get_json()["error"]["message"]
    assert error_code(client.post("/v1/jobs", headers=headers, **upload()), 401) == "unauthorized"
    assert error_code(trade(client, key), 401) == "unauthorized"


def test_revocation_reaches_other_web_processes_within_the_cache_time(service_env, subject, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Revoked by the operator's process; a running gunicorn refuses the token within
    API_KEY_CACHE_SECONDS (2 s), having served it the moment before."""
    server = Gunicorn({}, tmp_path / "gunicorn.log", free_port(), workers=2, threads=8)
    server.start()
    try:
        key = make_key(subject)
        token = requests.post(f"{server.url}/v1/auth/token", headers={"X-API-Key": key}, timeout=10).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        for _ in range(4):  # both processes have the key cached as live
            assert requests.get(f"{server.url}/v1/jobs", headers=headers, timeout=10).status_code == 200
        revoke(key)
        revoked_at = time.monotonic()
        statuses: list[int] = []
        while statuses[-6:] != [401] * 6:  # refused again and again, whichever process answers
            assert time.monotonic() - revoked_at < 3.0, f"the revoked key still works: {statuses}"
            statuses.append(requests.get(f"{server.url}/v1/jobs", headers=headers, timeout=10).status_code)
            time.sleep(0.05)
        print(f"\nrevoked key refused by every process after {time.monotonic() - revoked_at:.2f} s")
    finally:
        server.stop()


def test_the_cli_makes_personal_keys(service_env, subject) -> None:  # type: ignore[no-untyped-def]
    from cli.main import main

    runner = CliRunner()
    made = runner.invoke(main, ["apikey", "create", "--subject", subject, "--scopes", "submit read",
                                "--rate-limit", "60/minute", "--expires-in", "30d"])
    assert made.exit_code == 0, made.output
    key = made.output.strip()
    listed = runner.invoke(main, ["apikey", "list"])
    row = next(line.split("\t") for line in listed.output.splitlines() if line.startswith(key.split("_")[1]))
    assert row[1:4] == [subject, "submit read", "60/minute"] and row[5] == "live"
    expires = datetime.fromisoformat(row[4])
    assert abs((expires - datetime.now(UTC)) - timedelta(days=30)) < timedelta(minutes=1)
    bad = runner.invoke(main, ["apikey", "create", "--subject", subject, "--rate-limit", "lots"])
    assert bad.exit_code != 0 and "rate limit" in bad.output
    bad = runner.invoke(main, ["apikey", "create", "--subject", subject, "--expires-in", "soon"])
    assert bad.exit_code != 0 and "unit" in bad.output
    assert runner.invoke(main, ["apikey", "revoke", key.split("_")[1]]).exit_code == 0
    listed = runner.invoke(main, ["apikey", "list"])
    assert any(line.startswith(key.split("_")[1]) and line.endswith("revoked") for line in listed.output.splitlines())


@pytest.fixture()
def extension_client(service_env):  # type: ignore[no-untyped-def]
    from core.settings import load_settings
    from web.app import create_app

    return create_app(load_settings(cors_origins=f"https://screen.example,{EXTENSION}")).test_client()


def test_cors_for_a_configured_extension_origin(extension_client, subject) -> None:  # type: ignore[no-untyped-def]
    key = make_key(subject)
    preflight = extension_client.options("/v1/auth/token", headers={
        "Origin": EXTENSION, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"})
    assert preflight.headers["Access-Control-Allow-Origin"] == EXTENSION
    assert "x-api-key" in preflight.headers["Access-Control-Allow-Headers"].lower()
    token = extension_client.post("/v1/auth/token", headers={"X-API-Key": key, "Origin": EXTENSION})
    assert token.headers["Access-Control-Allow-Origin"] == EXTENSION
    headers = {"Authorization": f"Bearer {token.get_json()['access_token']}", "Origin": EXTENSION}
    job = extension_client.post("/v1/jobs", headers=headers, **upload())
    assert job.headers["Access-Control-Allow-Origin"] == EXTENSION
    polled = extension_client.get(f"{job.get_json()['status_url']}?wait=0.1", headers=headers)
    assert polled.headers["Access-Control-Allow-Origin"] == EXTENSION
    exposed = {h.strip().lower() for h in polled.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"retry-after", "location"} <= exposed  # the extension can read when to ask again
    for origin in ("chrome-extension://someotherextensionidxxxxxxxxxxxx", "moz-extension://abc"):
        other = extension_client.get("/v1/models", headers={**headers, "Origin": origin})
        assert "Access-Control-Allow-Origin" not in other.headers
