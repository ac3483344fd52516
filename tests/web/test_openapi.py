"""The OpenAPI document: valid, complete (every route), one error shape, and true to real responses."""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from tests.conftest import jpeg_bytes, png_bytes
from tests.support.processes import wait_for
from web.openapi import build_spec

PUBLIC = {"/health", "/ready", "/metrics", "/openapi.json"}
ERROR_REF = {"$ref": "#/components/schemas/Error"}


@pytest.fixture()
def spec(app) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return build_spec(app.extensions["deepscreen.settings"])


def conforms(spec: dict[str, Any], path: str, method: str, response) -> None:  # type: ignore[no-untyped-def]
    """Assert a real response is one the document describes: status, content type, headers, body."""
    documented = spec["paths"][path][method]["responses"]
    assert str(response.status_code) in documented, (path, method, response.status_code)
    entry = documented[str(response.status_code)]
    (media_type, content), = entry["content"].items()
    assert response.mimetype == media_type
    for name, header in entry.get("headers", {}).items():
        assert not header.get("required") or name in response.headers, name
    if media_type == "application/json":
        validator = Draft202012Validator({**content["schema"], "components": spec["components"]},
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(response.get_json())]
        assert not errors, errors


def test_document_is_valid_openapi_3_1(spec) -> None:  # type: ignore[no-untyped-def]
    validate(spec)
    assert spec["openapi"].startswith("3.1")


def test_every_route_is_documented_and_nothing_else(app, spec) -> None:  # type: ignore[no-untyped-def]
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules() if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert served == documented


def test_every_error_uses_the_error_shape_and_auth_is_declared(spec) -> None:  # type: ignore[no-untyped-def]
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer",
                                                               "bearerFormat": "JWT"}
    assert spec["security"] == [{"bearer": []}]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response["content"]["application/json"]["schema"] == ERROR_REF, (status, path)
            if path in PUBLIC:
                assert operation["security"] == [], path
            elif "x-scope" in operation:
                assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["code", "message", "details"]


def test_served_document_is_public_and_states_this_servers_limits(service_env) -> None:  # type: ignore[no-untyped-def]
    from core.settings import load_settings
    from web.app import create_app

    client = create_app(load_settings(max_text_chars=123, max_upload_bytes=4567)).test_client()
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert body["components"]["schemas"]["TextRequest"]["properties"]["texts"]["items"]["maxLength"] == 123
    upload = body["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload["properties"]["text"]["maxLength"] == 123
    assert "4567 bytes" in upload["properties"]["file"]["description"]


def test_real_responses_match_the_document(client, auth, spec, worker, subject) -> None:  # type: ignore[no-untyped-def]
    """The success paths a fuzzer cannot reach (a real API key, a real image, a finished job)."""
    from core.api_keys import create_api_key
    from core.db import session_scope

    with session_scope() as session:
        key = create_api_key(session, subject)
    token = client.post("/v1/auth/token", headers={"X-API-Key": key})
    conforms(spec, "/v1/auth/token", "post", token)
    conforms(spec, "/v1/auth/token", "post", client.post("/v1/auth/token", json={"api_key": key + "x"}))
    bearer = {"Authorization": f"Bearer {token.get_json()['access_token']}"}

    data = jpeg_bytes((96, 72), seed=314)
    form = {"file": (io.BytesIO(data), "a.jpg"), "text": "a caption"}
    accepted = client.post("/v1/jobs", headers=bearer, data=form, content_type="multipart/form-data")
    assert accepted.status_code == 202
    conforms(spec, "/v1/jobs", "post", accepted)
    job_id = accepted.get_json()["id"]

    def finished():  # type: ignore[no-untyped-def]
        response = client.get(f"/status/{job_id}", headers=bearer)
        return response if response.get_json()["status"] in ("succeeded", "failed") else None

    done = wait_for(finished, 60, what="the job")
    assert done.get_json()["status"] == "succeeded"
    conforms(spec, "/status/{task_id}", "get", done)
    conforms(spec, "/v1/jobs/{job_id}", "get", client.get(f"/v1/jobs/{job_id}", headers=bearer))
    again = client.post("/v1/jobs", headers=bearer, content_type="multipart/form-data",
                        data={"file": (io.BytesIO(data), "a.jpg"), "text": "a caption"})
    assert again.status_code == 200
    conforms(spec, "/v1/jobs", "post", again)
    conforms(spec, "/v1/jobs", "get", client.get("/v1/jobs?limit=1", headers=bearer))
    conforms(spec, "/v1/models", "get", client.get("/v1/models", headers=bearer))

    plain = jpeg_bytes((64, 64), seed=315)  # no text: lookups answer for media alone
    queued = client.post("/v1/jobs", headers=bearer, content_type="multipart/form-data",
                         data={"file": (io.BytesIO(plain), "b.jpg")})
    location = queued.headers["Location"]
    wait_for(lambda: client.get(location, headers=bearer).get_json()["status"] == "succeeded", 60,
             what="the second job")
    found = client.get(f"/v1/lookup/{hashlib.sha256(plain).hexdigest()}", headers=bearer)
    assert found.status_code == 200
    conforms(spec, "/v1/lookup/{sha256}", "get", found)

    for path in sorted(PUBLIC):
        conforms(spec, path, "get", client.get(path))


def test_batches_and_long_polls_match_the_document(client, auth, spec, worker) -> None:  # type: ignore[no-untyped-def]
    key = {"Idempotency-Key": "openapi-batch-1", **auth}

    def batch_form() -> dict[str, Any]:
        return {"file": [(io.BytesIO(jpeg_bytes((40, 40), seed=316)), "a.jpg"), (io.BytesIO(b"junk"), "b.bin")],
                "url": ["ftp://example.com/x.png"]}

    accepted = client.post("/v1/batches", headers=key, data=batch_form(), content_type="multipart/form-data")
    assert accepted.status_code == 202
    conforms(spec, "/v1/batches", "post", accepted)
    replayed = client.post("/v1/batches", headers=key, data=batch_form(), content_type="multipart/form-data")
    assert replayed.status_code == 200
    conforms(spec, "/v1/batches", "post", replayed)
    status_url = accepted.get_json()["status_url"]
    conforms(spec, "/v1/batches/{batch_id}", "get", client.get(status_url, headers=auth))
    job_id = accepted.get_json()["items"][0]["job_id"]
    waited = client.get(f"/v1/jobs/{job_id}?wait=30", headers=auth)
    assert waited.get_json()["status"] == "succeeded"
    conforms(spec, "/v1/jobs/{job_id}", "get", waited)
    wait_for(lambda: client.get(status_url, headers=auth).get_json()["counts"]["succeeded"] == 1, 30,
             what="the batch")
    conforms(spec, "/v1/batches/{batch_id}", "get", client.get(status_url, headers=auth))


def upload(data: bytes, **fields: str) -> dict[str, Any]:
    return {"data": {"file": (io.BytesIO(data), "x.png"), **fields}, "content_type": "multipart/form-data"}


@pytest.mark.parametrize("method, path, kwargs, status", [
    ("get", "/v1/jobs", {}, 401),
    ("get", "/v1/jobs", {"query_string": {"limit": "0"}}, 400),
    ("get", "/v1/jobs", {"query_string": {"status": ""}}, 400),  # was read as "no filter" against the enum
    ("get", "/v1/jobs/{job_id}", {}, 404),
    ("get", "/v1/lookup/{sha256}", {}, 400),
    ("post", "/v1/jobs", {"data": {"text": "no file"}}, 400),
    ("post", "/v1/jobs", upload(b"%PDF-1.7 not an image"), 415),
    ("post", "/v1/jobs", upload(png_bytes(), models="nope"), 422),
    ("post", "/v1/jobs", {"data": {"url": "http://127.0.0.1/x.png"}}, 422),  # the SSRF guard
    ("post", "/v1/jobs", {"data": {"url": "gopher://x"}}, 422),
    ("get", "/v1/jobs/{job_id}", {"query_string": {"wait": "31"}}, 400),
    ("get", "/status/{task_id}", {"query_string": {"wait": "x"}}, 400),
    ("post", "/v1/batches", {"data": {"text": "no items"}}, 400),
    ("get", "/v1/batches/{batch_id}", {}, 404),
    ("post", "/v1/text", {"json": {"texts": []}}, 422),
    ("post", "/v1/text", {"json": {"texts": ["x"] * 101}}, 413),
])
def test_error_responses_match_the_document(client, auth, spec, method, path, kwargs, status) -> None:  # type: ignore[no-untyped-def]
    url = path.replace("{job_id}", "0" * 8).replace("{task_id}", "0" * 8).replace("{sha256}", "not-hex")
    url = url.replace("{batch_id}", "0" * 8)
    response = getattr(client, method)(url, headers={} if status == 401 else auth, **kwargs)
    assert response.status_code == status, response.get_json()
    conforms(spec, path, method, response)


def test_the_conformance_check_catches_a_leaked_owner(app, spec) -> None:  # type: ignore[no-untyped-def]
    from flask import json

    good = {"status": "ok"}
    conforms(spec, "/health", "get", app.response_class(json.dumps(good), mimetype="application/json"))
    with pytest.raises(AssertionError, match="owner"):
        leaked = {"items": [], "next": None, "owner": "someone"}
        conforms(spec, "/v1/jobs", "get", app.response_class(json.dumps(leaked), mimetype="application/json"))
