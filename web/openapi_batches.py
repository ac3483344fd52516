"""The batch operations of the OpenAPI contract: ``POST /v1/batches`` and ``GET /v1/batches/{id}``
(with ``?wait=`` and ``?include=jobs``, a bulk client's whole collection in one request)."""

from __future__ import annotations

from typing import Any

from core.batches import MAX_ITEMS
from core.models import JobStatus
from core.settings import Settings
from web.long_poll import MAX_WAIT_SECONDS
from web.openapi_parts import RETRY_AFTER, Schema, errors, json_body, nullable, obj, ref

ITEM = {
    "index": {"type": "integer", "minimum": 0,
              "description": "Position in the request: the `file` parts first, then the `url` fields"},
    "job_id": nullable({"type": "string"}),
    "status": {"type": "string", "enum": [*(s.value for s in JobStatus), "rejected"],
               "description": "The job's status; `rejected` when the item was refused at submission"},
    "error": nullable(obj({"code": {"type": "string"}, "message": {"type": "string"}})),
}


def schemas() -> dict[str, Schema]:
    return {
        "BatchItem": obj({
            **ITEM,
            "job": nullable({**ref("Job"), "description": "With ?include=jobs, on items that have a job: its "
                                                          "document, as GET /v1/jobs/{id} answers (null when "
                                                          "retention removed it)"}),
        }, required=list(ITEM)),
        "BatchAccepted": obj({
            "id": {"type": "string"}, "status_url": {"type": "string", "description": "/v1/batches/{id}"},
            "items": {"type": "array", "items": ref("BatchItem")},
        }),
        "Batch": obj({
            "id": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "counts": obj({s.value: {"type": "integer", "minimum": 0} for s in JobStatus}),
            "items": {"type": "array", "items": ref("BatchItem")},
        }),
    }


def paths(settings: Settings, form_fields: dict[str, Schema], location: dict[str, Any]) -> dict[str, Any]:
    body = {
        "type": "object",
        "properties": {
            "file": {"type": "array", "maxItems": MAX_ITEMS,
                     "items": {"type": "string", "format": "binary"},
                     "description": "Media files, one per `file` part"},
            "url": {"type": "array", "maxItems": MAX_ITEMS, "items": {"type": "string", "maxLength": 2000},
                    "description": "http(s) URLs the server fetches (as POST /v1/jobs does with `url`)"},
            **form_fields,
        },
        "description": f"At most {MAX_ITEMS} items (files and URLs together); the whole request is limited "
                       f"like one upload ({settings.max_upload_bytes} bytes). `text`, `models` and "
                       "`callback_url` apply to every item.",
    }
    return {
        "/v1/batches": {"post": {
            "summary": "Submit many files and/or URLs at once: one job per item", "operationId": "submitBatch",
            "tags": ["batches"], "x-scope": "submit",
            "description": "Each item is validated and submitted like POST /v1/jobs; an item that fails is "
                           "reported in `items` (status `rejected`, with its error) without failing the others. "
                           "The files are recorded together (one transaction). "
                           "Each item counts against the submit rate limit.",
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 200}}],
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": body}}},
            "responses": {
                "200": json_body(ref("BatchAccepted"), "This Idempotency-Key made a batch already: that one",
                                 {**location, **RETRY_AFTER}),
                "202": json_body(ref("BatchAccepted"), "Accepted; follow status_url", {**location, **RETRY_AFTER}),
                **errors(400, 401, 403, 413, 422, 429, 500, 503),
            },
        }},
        "/v1/batches/{batch_id}": {"get": {
            "summary": "One of the caller's batches: counts by status and every item", "operationId": "getBatch",
            "tags": ["batches"], "x-scope": "read",
            "parameters": [
                {"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "wait", "in": "query", "required": False,
                 "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
                 "description": f"Long poll: hold the answer up to this many seconds (at most {MAX_WAIT_SECONDS}) "
                                "until every item is final; then, or at the end of the wait, the batch as it "
                                "stands. A server whose threads are busy may answer at once."},
                {"name": "include", "in": "query", "required": False, "schema": {"type": "string", "enum": ["jobs"]},
                 "description": "`jobs`: each item with a job carries its document (`job`), verdicts included, "
                                "read for the whole batch at once"},
            ],
            "responses": {"200": json_body(ref("Batch"), "The batch; with unfinished jobs it carries Retry-After",
                                           RETRY_AFTER),
                          **errors(400, 401, 403, 404, 429, 500, 503)},
        }},
    }
