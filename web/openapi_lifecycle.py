"""The OpenAPI description of the model lifecycle: version states, reprocessing runs, flip reports,
and the superseded results of a job (``?versions=all``). Merged into web.openapi's document."""

from __future__ import annotations

from typing import Any

from web.openapi_parts import Schema, errors, json_body, nullable, obj, ref

STATES = ["candidate", "shadow", "live", "retired"]


def schemas(base: dict[str, Schema]) -> dict[str, Schema]:
    version = obj({
        "version": {"type": "string"}, "state": {"type": "string", "enum": STATES},
        "shadow_sample": {"type": "number"}, "changed_by": {"type": "string"},
        "changed_at": nullable({"type": "string"}), "description": {"type": "string"},
        "validation": nullable(ref("Validation")), "missing": {"type": "boolean"},
    }, required=["version", "state", "shadow_sample", "changed_by", "changed_at", "description", "validation"])
    model = dict(base["Model"])
    model["properties"] = {**model["properties"], "versions": {"type": "array", "items": version},
                           "live": {"type": "boolean", "description": "this entry describes the live version"}}
    model["required"] = [*model["required"], "live"]
    job = dict(base["Job"])
    job["properties"] = {**job["properties"], "results_history": {
        "type": "object", "description": "?versions=all: model → every result, superseded and shadow ones too",
        "additionalProperties": {"type": "array", "items": {"type": "object"}}}}
    run = obj({
        "id": {"type": "string"}, "model": {"type": "string"}, "version": {"type": "string"},
        "baseline_version": nullable({"type": "string"}),
        "status": {"type": "string", "enum": ["running", "cancelled", "done"]},
        "trigger": {"type": "string", "enum": ["manual", "promotion", "schedule"]},
        "since": nullable({"type": "string"}), "only_positive": {"type": "boolean"},
        "total": {"type": "integer"}, "done": {"type": "integer"}, "failed": {"type": "integer"},
        "flipped": {"type": "integer"}, "rate_limit": {"type": "number"}, "rate": {"type": "number"},
        "eta_seconds": nullable({"type": "number"}), "created_by": {"type": "string"},
        "created_at": {"type": "string"}, "finished_at": nullable({"type": "string"}),
    })
    return {"Model": model, "Job": job, "ReprocessRun": run, "ModelVersionChange": obj({
        "name": {"type": "string"}, "version": {"type": "string"}, "from": nullable({"type": "string"}),
        "to": {"type": "string"}, "by": {"type": "string"}, "previous_live": nullable({"type": "string"}),
        "reprocess_run": nullable(ref("ReprocessRun")),
    })}


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


RUN_ID = _path("run_id", "A reprocessing run's id")
ADMIN = {"tags": ["models"], "x-scope": "admin"}


def paths() -> dict[str, Any]:
    return {
        "/v1/models/{name}/history": {"get": {
            "summary": "Every state change of a model's versions: who, when", "operationId": "modelHistory",
            **ADMIN, "parameters": [_path("name", "A model name")],
            "responses": {"200": json_body(obj({"name": {"type": "string"},
                                                "changes": {"type": "array", "items": {"type": "object"}}}),
                                           "The history"), **errors(401, 403, 429, 500)},
        }},
        "/v1/models/{name}/versions/{version}/{action}": {"post": {
            "summary": "promote (make live; the live one is retired, a reprocessing run starts), shadow "
                       "(body {sample}), retire or candidate", "operationId": "changeModelVersion", **ADMIN,
            "parameters": [_path("name", "A model name"), _path("version", "A version in the model repository"),
                           {**_path("action", "What to do"),
                            "schema": {"type": "string", "enum": ["promote", "shadow", "retire", "candidate"]}}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": obj({
                "sample": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "reprocess": {"type": "boolean"}}, required=[], extra=True)}}},
            "responses": {"200": json_body(ref("ModelVersionChange"), "Changed"),
                          **errors(401, 403, 404, 409, 422, 429, 500)},
        }},
        "/v1/reprocess": {
            "post": {"summary": "Start a reprocessing run (or resume the unfinished one of the same scope)",
                     "operationId": "startReprocess", **ADMIN,
                     "requestBody": {"required": True, "content": {"application/json": {"schema": obj({
                         "model": {"type": "string"}, "version": {"type": "string"},
                         "since": {"type": "string"}, "only_positive": {"type": "boolean"},
                         "rate": {"type": "number", "exclusiveMinimum": 0}}, required=["model"], extra=True)}}},
                     "responses": {"202": json_body(ref("ReprocessRun"), "Started"),
                                   **errors(401, 403, 422, 429, 500)}},
            "get": {"summary": "The latest reprocessing runs", "operationId": "listReprocess", **ADMIN,
                    "responses": {"200": json_body(obj({"items": {"type": "array", "items": ref("ReprocessRun")}}),
                                                   "Runs"), **errors(401, 403, 429, 500)}},
        },
        "/v1/reprocess/{run_id}": {"get": {
            "summary": "A run's progress: total, done, failed, flipped, rate, ETA", "operationId": "getReprocess",
            **ADMIN, "parameters": [RUN_ID],
            "responses": {"200": json_body(ref("ReprocessRun"), "The run"), **errors(401, 403, 404, 429, 500)},
        }},
        "/v1/reprocess/{run_id}/cancel": {"post": {
            "summary": "Stop a run (a later start with the same scope resumes it)", "operationId": "cancelReprocess",
            **ADMIN, "parameters": [RUN_ID],
            "responses": {"200": json_body(ref("ReprocessRun"), "The run"), **errors(401, 403, 404, 429, 500)},
        }},
        "/v1/reprocess/{run_id}/flips": {"get": {
            "summary": "The flip report: jobs whose label changed, both scores, the delta; ?format=csv",
            "operationId": "reprocessFlips", **ADMIN,
            "parameters": [RUN_ID, {"name": "format", "in": "query", "required": False,
                                    "schema": {"type": "string", "enum": ["json", "csv"]}}],
            "responses": {"200": {"description": "The report", "content": {
                "application/json": {"schema": {"type": "object"}}, "text/csv": {"schema": {"type": "string"}}}},
                **errors(401, 403, 404, 429, 500)},
        }},
    }


VERSIONS = {"name": "versions", "in": "query", "required": False,
            "schema": {"type": "string", "enum": ["live", "all"]},
            "description": "all: add results_history, every version's result (superseded and shadow ones too)"}
