"""Building blocks of the OpenAPI document: schema helpers, the one error shape, Retry-After."""

from __future__ import annotations

from typing import Any

JSON = "application/json"
Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Schema], required: list[str] | None = None, extra: bool = False) -> Schema:
    """An object whose listed properties are all required unless ``required`` says otherwise.

    Responses list every property they carry; request bodies pass ``extra=True``, since the server
    ignores fields it does not know.
    """
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required, "additionalProperties": extra}


RETRY_AFTER = {"Retry-After": {
    "schema": {"type": "string", "pattern": "^[0-9]+$"}, "required": False,
    "description": "Present while the work is unfinished (a queued or running job, a batch with such jobs): "
                   "seconds to wait before asking again"}}


def json_body(schema: Schema, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


ERROR_DESCRIPTIONS = {
    400: "Malformed request (code names the field: missing_file, file_and_url, bad_wait, empty_batch, "
         "too_many_items, bad_limit, bad_cursor, bad_include, …)",
    401: "Missing, malformed, expired or foreign token (`unauthorized`)",
    403: "The token lacks the scope this operation needs (`forbidden`)",
    404: "No such resource, or one owned by someone else (`not_found`)",
    409: "Conflicts with the current state (`live_version`: promote another version before retiring this one)",
    413: "The body, the upload, a text or the image's pixel count is too large",
    415: "The upload is not an accepted format, judged by its bytes (`unsupported_media_type`)",
    422: ("Well-formed but unacceptable (unknown_model, invalid_body, invalid_text, corrupt headers; for a `url`: "
          "bad_url, url_not_allowed, url_fetch_failed, url_too_large)"),
    429: "Rate limit exceeded (`rate_limited`: the caller's, or its API key's own); see Retry-After",
    414: "The request line is over 4094 bytes (`uri_too_long`), answered by the HTTP server before the API",
    431: "Too many or too large headers (`headers_too_large`), answered by the HTTP server before the API",
    500: "Unexpected server error (`internal_error`)",
    503: ("A dependency is down: database_unavailable, storage_unavailable, model_unavailable, "
          "screening_failed, timeout; or server_busy (every upload slot taken: see Retry-After)"),
}


# Any request can be refused by the HTTP server before the API sees it (web/gunicorn_worker.py).
SERVER_LIMITS = (414, 431)


def errors(*statuses: int) -> dict[str, Any]:
    """Responses in the one error shape (plus the server's own limits, on every operation); 429 carries
    Retry-After."""
    out: dict[str, Any] = {}
    for status in sorted({*statuses, *SERVER_LIMITS}):
        headers = {"Retry-After": {"schema": {"type": "string"}, "required": True}} if status == 429 else None
        out[str(status)] = json_body(ref("Error"), ERROR_DESCRIPTIONS[status], headers)
    return out
