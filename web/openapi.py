"""The OpenAPI 3.1 contract as Python data, served at ``GET /openapi.json``.

The limits in it (upload size, text length) are filled in from the running app's settings, so the
document a client reads is the one this server enforces. tests/web/test_contract_fuzz.py drives a live
server from it with schemathesis; tests/web/test_openapi.py checks every route is in it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from core.models import JobStatus
from core.settings import Settings
from web import openapi_batches, openapi_lifecycle
from web.extensions import limiter
from web.long_poll import MAX_WAIT_SECONDS
from web.openapi_parts import (
    JSON,
    RETRY_AFTER,
    Schema,
    errors,
    json_body,
    nullable,
    obj,
    ref,
)
from web.text_api import MAX_TEXTS

bp = Blueprint("openapi", __name__)
def schemas(settings: Settings) -> dict[str, Schema]:
    number_map = {"type": "object", "additionalProperties": {"type": "number"}}
    validation = obj({
        "status": {"type": "string", "enum": ["validated", "not_validated_on_real_data"]},
        "summary": {"type": "string"}, "date": {"type": "string"},
        "datasets": {"type": "array", "items": {"type": "object"}},
    }, required=["status", "summary", "datasets"], extra=True)
    verdict = obj({
        "model_version": {"type": "string"}, "label": {"type": "string"},
        "score": nullable({"type": "number"}), "scores": number_map, "evidence": {"type": "object"},
        "validation": ref("Validation"),
    })
    return {
        "Error": obj({"error": obj({
            "code": {"type": "string", "minLength": 1}, "message": {"type": "string", "minLength": 1},
            "details": {"type": "object"},
        })}),
        "Verdict": verdict,
        "Validation": validation,
        "Media": obj({
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "format": {"type": "string"},
            "kind": {"type": "string", "enum": ["image", "video"]}, "size": {"type": "integer", "minimum": 1},
            "width": nullable({"type": "integer"}), "height": nullable({"type": "integer"}),
        }),
        "Job": obj({
            "id": {"type": "string"},
            "status": {"type": "string", "enum": [s.value for s in JobStatus]},
            "attempts": {"type": "integer", "minimum": 0},
            "models": {"type": "array", "items": {"type": "string"}},
            "media": nullable(ref("Media")),
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "started_at": nullable({"type": "string", "format": "date-time"}),
            "finished_at": nullable({"type": "string", "format": "date-time"}),
            "results": {"type": "object", "additionalProperties": ref("Verdict"),
                        "description": "model name → verdict; empty until the job succeeds"},
            "error": nullable(obj({"code": {"type": "string"}, "message": {"type": "string"}})),
            "status_url": {"type": "string", "description": "Where to poll: /status/{id}"},
            "callback_url": nullable({"type": "string", "description": "Where the finished job is POSTed"}),
        }),
        **openapi_batches.schemas(),
        "JobPage": obj({
            "items": {"type": "array", "items": ref("Job")},
            "next": nullable({"type": "string", "description": "Pass as ?cursor= for the next page"}),
        }),
        "Model": obj({
            "name": {"type": "string"}, "version": {"type": "string"}, "task": {"type": "string"},
            "description": {"type": "string"}, "media": {"type": "array", "items": {"type": "string"}},
            "labels": {"type": "array", "items": {"type": "string"}}, "thresholds": number_map,
            "variants": {"type": "array", "items": {"type": "string"}}, "provenance": {"type": "object"},
            "versions": {"type": "array", "items": {"type": "string"}}, "default": {"type": "boolean"},
            "validation": ref("Validation"),
        }),
        "Lookup": obj({
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "results": {"type": "object", "additionalProperties": obj({
                "model_version": {"type": "string"}, "label": {"type": "string"},
                "score": nullable({"type": "number"}), "scores": number_map, "validation": ref("Validation"),
            })},
        }),
        "TextRequest": obj({"texts": {
            "type": "array", "minItems": 1, "maxItems": MAX_TEXTS,
            "items": {"type": "string", "maxLength": settings.max_text_chars},
        }}, extra=True),
        "TextResults": obj({
            "model": {"type": "string"},
            "results": {"type": "array", "items": ref("Verdict"), "description": "One per text, in order"},
        }),
        "Token": obj({
            "access_token": {"type": "string"}, "token_type": {"type": "string", "enum": ["Bearer"]},
            "expires_in": {"type": "integer", "minimum": 1}, "scope": {"type": "string"},
        }),
        "Checks": {"type": "object", "additionalProperties": obj(
            {"ok": {"type": "boolean"}, "error": {"type": "string"}}, required=["ok"])},
    }


def _job_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"},
            "description": "A job id as returned by POST /v1/jobs"}


WAIT = {"name": "wait", "in": "query", "required": False,
        "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
        "description": f"Long poll: hold the answer up to this many seconds (at most {MAX_WAIT_SECONDS}) until the "
                       "job is final (succeeded, failed or expired); then, or at the end of the wait, the job as "
                       "it stands. A server whose threads are busy may answer at once."}


def _job_read(summary: str, operation_id: str, name: str) -> dict[str, Any]:
    return {"get": {
        "summary": summary, "operationId": operation_id, "tags": ["jobs"], "x-scope": "read",
        "parameters": [_job_id(name), WAIT, openapi_lifecycle.VERSIONS],
        "responses": {"200": json_body(ref("Job"), "The job; unfinished ones carry Retry-After", RETRY_AFTER),
                      **errors(400, 401, 403, 404, 429, 500, 503)},
    }}


def _console() -> dict[str, Any]:
    """The web console's files (web/console.py): served here, described for completeness."""
    html = {"text/html": {"schema": {"type": "string"}}}
    public = {"security": [], "tags": ["console"]}
    redirect = {"Location": {"schema": {"type": "string"}, "required": True}}
    return {
        "/": {"get": {"summary": "Redirect to the web console", "operationId": "consoleRoot", **public,
                      "responses": {"302": {"description": "To /console/", "headers": redirect}, **errors(500)}}},
        "/console": {"get": {"summary": "Redirect to /console/", "operationId": "consoleNoSlash", **public,
                             "responses": {"301": {"description": "To /console/", "headers": redirect},
                                           **errors(500)}}},
        "/console/": {"get": {"summary": "The web console", "operationId": "console", **public,
                              "responses": {"200": {"description": "The console page", "content": html},
                                            **errors(500)}}},
        "/console/{name}": {"get": {
            "summary": "A file of the web console (scripts, styles)", "operationId": "consoleAsset", **public,
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The file",
                                  "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                          **errors(404, 500)}}},
    }


def paths(settings: Settings) -> dict[str, Any]:
    location = {"Location": {"schema": {"type": "string"}, "required": True,
                             "description": "The job's status_url"},
                "Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]},
                                        "description": "Present when an Idempotency-Key was seen before"}}
    form_fields = {
        "text": {"type": "string", "maxLength": settings.max_text_chars,
                 "description": "Optional caption/overlay text screened with the media"},
        "models": {"type": "string", "description": "Comma list of model names; default: the server's"},
        "callback_url": {"type": "string", "maxLength": 2000,
                         "description": "http(s) URL to POST the finished job to, signed with "
                                        "X-Deepscreen-Signature (needs WEBHOOK_SECRET on the server)"},
    }
    upload = {
        "type": "object",
        "description": "Exactly one of `file` and `url`.",
        "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": f"The media, at most {settings.max_upload_bytes} bytes; format judged by "
                                    f"its bytes: {', '.join(sorted(settings.formats))}"},
            "url": {"type": "string", "maxLength": 2000,
                    "description": "Instead of `file`: an http(s) URL the server fetches, under an SSRF guard (no "
                                   "private, loopback, link-local, multicast, reserved or metadata addresses, "
                                   "DNS resolved once and the connection pinned to the checked address, at most "
                                   "3 redirects, each checked), with the upload's size limit and the same checks "
                                   "of its bytes. Refused with 422 bad_url, url_not_allowed, url_fetch_failed or "
                                   "url_too_large, 415 for content that is not media; a server with "
                                   "URL_SUBMISSIONS off answers 400 missing_file."},
            **form_fields,
        },
    }
    public = {"security": [], "tags": ["operations"]}
    return {
        "/v1/jobs": {
            "post": {
                "summary": "Submit media for screening", "operationId": "submitJob", "tags": ["jobs"],
                "x-scope": "submit",
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                "schema": {"type": "string", "minLength": 1, "maxLength": 200}},
                               {**WAIT, "description": "Submit and wait in one request: hold the answer up to "
                                "this many seconds until the new job is final; a final job is answered 200, one "
                                "still queued or running 202 (poll status_url). A bad value is refused (400 "
                                "bad_wait) before anything is stored."}],
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": upload}}},
                "responses": {
                    "200": json_body(ref("Job"), "Final: known content answered at once (succeeded), a job "
                                                 "that ended within ?wait=, or a replayed Idempotency-Key "
                                                 "whose job has ended (succeeded or failed)", location),
                    "202": json_body(ref("Job"), "Accepted and queued; poll status_url (or ?wait=)",
                                     {**location, **RETRY_AFTER}),
                    **errors(400, 401, 403, 413, 415, 422, 429, 500, 503),
                },
            },
            "get": {
                "summary": "The caller's jobs, newest first", "operationId": "listJobs", "tags": ["jobs"],
                "x-scope": "read",
                "parameters": [
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                    {"name": "status", "in": "query",
                     "schema": {"type": "string", "enum": [s.value for s in JobStatus]}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"},
                     "description": "The `next` value of the previous page"},
                ],
                "responses": {"200": json_body(ref("JobPage"), "One page of jobs"),
                              **errors(400, 401, 403, 429, 500, 503)},
            },
        },
        "/v1/jobs/{job_id}": _job_read("One of the caller's jobs", "getJob", "job_id"),
        "/status/{task_id}": _job_read("Poll a job (alias of /v1/jobs/{id})", "getStatus", "task_id"),
        **openapi_batches.paths(settings, form_fields, {"Location": {"schema": {"type": "string"}, "required": True,
                                                        "description": "The batch's status_url"}}),
        "/v1/models": {"get": {
            "summary": "Models the repository serves", "operationId": "listModels", "tags": ["models"],
            "x-scope": "read",
            "responses": {"200": json_body(obj({"items": {"type": "array", "items": ref("Model")}}), "All"),
                          **errors(401, 403, 429, 500)},
        }},
        "/v1/lookup/{sha256}": {"get": {
            "summary": "A known verdict for content, by its sha256, without uploading it",
            "operationId": "lookup", "tags": ["jobs"], "x-scope": "read",
            "parameters": [{"name": "sha256", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}],
            "responses": {"200": json_body(ref("Lookup"), "Verdicts at the live model versions"),
                          **errors(400, 401, 403, 404, 429, 500, 503)},
        }},
        "/v1/text": {"post": {
            "summary": "Screen short texts synchronously", "operationId": "screenTexts", "tags": ["text"],
            "x-scope": "submit",
            "requestBody": {"required": True, "content": {JSON: {"schema": ref("TextRequest")}}},
            "responses": {"200": json_body(ref("TextResults"), "One verdict per text"),
                          **errors(401, 403, 413, 422, 429, 500, 503)},
        }},
        "/v1/auth/token": {"post": {
            "summary": "Trade an API key for a short-lived JWT", "operationId": "issueToken",
            "tags": ["auth"],
            "security": [{"apiKey": []}],
            "requestBody": {"required": False, "content": {JSON: {"schema": obj(
                {"api_key": {"type": "string", "description": "Alternative to the X-API-Key header"}},
                required=[], extra=True)}}},
            "description": "The token carries the key's scopes and id: the key's own rate limit applies to every "
                           "request made with it, it stops working when the key is revoked (within "
                           "API_KEY_CACHE_SECONDS) and it never outlives the key's expiry.",
            "responses": {"200": json_body(ref("Token"), "A Bearer token"),
                          **errors(401, 413, 429, 500, 503)},
        }},
        "/health": {"get": {
            "summary": "Liveness", "operationId": "health", **public,
            "responses": {"200": json_body(obj({"status": {"type": "string", "enum": ["ok"]}}), "Alive"),
                          **errors(500)},
        }},
        "/ready": {"get": {
            "summary": "Readiness: database, broker, object store, models, cache", "operationId": "ready",
            **public,
            "responses": {
                "200": json_body(obj({"status": {"type": "string", "enum": ["ready"]},
                                      "checks": ref("Checks"),
                                      "workers": {"type": "array", "items": {"type": "object"},
                                                  "description": "Live workers: models@versions, provider, "
                                                                 "precision, batch size"}}),
                                 "Every dependency answers"),
                **errors(500, 503),
            },
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics", "operationId": "metrics", **public,
            "responses": {"200": {"description": "Prometheus text exposition",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **errors(500)},
        }},
        "/openapi.json": {"get": {
            "summary": "This document", "operationId": "openapi", **public,
            "responses": {"200": json_body({"type": "object"}, "The OpenAPI document"), **errors(500)},
        }},
        **_console(),
    }


def build_spec(settings: Settings) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "deepscreen", "version": "1",
            "description": "Screens uploaded media for deepfakes and hateful memes. Every error has the body "
                           '`{"error": {"code", "message", "details"}}`. Scopes: `submit` (POST), `read` '
                           "(GET), `admin` (both); each operation's `x-scope` names the one it needs. "
                           "`Retry-After` (seconds) comes with every 429 and every answer about unfinished work.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": [{"name": n} for n in ("jobs", "batches", "models", "text", "auth", "operations", "console")],
        "paths": {**paths(settings), **openapi_lifecycle.paths()},
        "components": {
            "schemas": {**(base := schemas(settings)), **openapi_lifecycle.schemas(base)},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


@bp.get("/openapi.json")
@limiter.exempt
def document():  # type: ignore[no-untyped-def]
    extensions = current_app.extensions
    if "deepscreen.openapi" not in extensions:
        extensions["deepscreen.openapi"] = build_spec(extensions["deepscreen.settings"])
    spec = extensions["deepscreen.openapi"]
    response = jsonify(spec)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
