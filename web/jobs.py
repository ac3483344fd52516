"""Jobs: submit media (a file, or a URL the server fetches), read one job (``?wait=`` long-polls),
list the caller's jobs. ``/status/<id>`` is an alias for polling."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from flask import Blueprint, jsonify, request, url_for
from sqlalchemy import and_, or_, select

from core import status_cache
from core.db import session_scope
from core.jobs import history, job_document, read_document
from core.models import TERMINAL, Job, JobStatus
from core.object_store import get_store
from core.submissions import submit
from web import metrics
from web.auth import current_principal, require, settings
from web.errors import ApiError
from web.extensions import limiter
from web.long_poll import ask_again, read_waiting, wait_seconds
from web.models_api import live_versions
from web.queue import enqueue_job, enqueue_webhook
from web.uploads import read_callback, read_flag, read_media, read_models, read_text, upload_slot

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
status_bp = Blueprint("status", __name__)


def public(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k != "owner"}
    out["status_url"] = url_for("status.status", task_id=doc["id"], _external=False)
    return out


def _submit_limit() -> str:
    return settings().rate_limit_submit


@bp.post("")
@require("submit")
@limiter.limit(_submit_limit)
def create():  # type: ignore[no-untyped-def]
    """Submit one file (or URL). With ``?wait=`` the answer is held until the verdict is in (or the
    wait ends): one request for a client that wants the verdict now, instead of a POST and a poll."""
    cfg = settings()
    principal = current_principal()
    wait = wait_seconds()  # a bad ?wait= is refused before anything is stored
    with upload_slot(cfg):  # the media's bytes are in memory from here until the job exists
        upload = read_media(request, cfg)
        text = read_text(request, cfg)
        versions = live_versions()
        models = read_models(request, cfg, set(versions))
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= 200):
            raise ApiError(400, "bad_idempotency_key", "Idempotency-Key must be 1 to 200 characters")
        callback = read_callback(request, cfg)
        notify = read_flag(request, "notify_rescreen")
        result = submit(get_store(), principal.subject, upload, text, {m: versions[m] for m in models}, key,
                        callback, notify_rescreen=notify)
    if result.needs_enqueue:
        enqueue_job(result.doc["id"])
    elif callback and not result.replayed:
        enqueue_webhook(result.doc["id"])  # answered at once from a known verdict: still call back
    metrics.SUBMITTED.labels(upload.kind, "known" if result.doc["status"] == JobStatus.SUCCEEDED else "queued").inc()
    doc = result.doc
    if wait > 0 and doc["status"] not in TERMINAL:
        job_id = doc["id"]
        doc = read_waiting(job_id, lambda: _owned_document(job_id), cfg, wait)
    body = public(doc)
    code = 200 if body["status"] in TERMINAL else 202  # final (known verdict or waited for): 200
    response = jsonify(body)
    response.status_code = code
    response.headers["Location"] = body["status_url"]
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if body["status"] not in TERMINAL:
        ask_again()
    return response


def _owned_document(job_id: str, all_versions: bool = False) -> dict[str, Any]:
    subject = current_principal().subject
    if all_versions:  # every version's result (superseded and shadow ones too): always from the database
        with session_scope() as session:
            job = session.get(Job, job_id) if len(job_id) <= 36 and "\x00" not in job_id else None
            if job is None or job.owner != subject:
                raise ApiError(404, "not_found", f"no job {job_id!r}")
            return {**job_document(job), "results_history": history(job)}
    doc = status_cache.get(job_id)
    # Only a terminal status is final; an in-flight one in the cache may lag the database (a cache
    # write lost during a Redis partition), so the source of truth answers until the job is done.
    if doc is None or doc.get("owner") != subject or doc.get("status") not in TERMINAL:
        with session_scope() as session:
            doc = read_document(session, job_id)
        # Someone else's job is reported exactly like a missing one: ids leak nothing.
        if doc is None or doc["owner"] != subject:
            raise ApiError(404, "not_found", f"no job {job_id!r}")
        if doc["status"] in TERMINAL:  # only a final document is worth caching for the next poll
            status_cache.put(doc)
    return doc


def _job_answer(job_id: str):  # type: ignore[no-untyped-def]
    """One job, at once or (``?wait=``) once it is final; unfinished answers carry Retry-After."""
    versions = request.args.get("versions", "live")
    if versions not in ("live", "all"):
        raise ApiError(400, "bad_versions", "versions must be live or all")
    doc = read_waiting(job_id, lambda: _owned_document(job_id, versions == "all"), settings())
    if doc["status"] not in TERMINAL:
        ask_again()
    return jsonify(public(doc))


@status_bp.get("/status/<task_id>")
@require("read")
def status(task_id: str):  # type: ignore[no-untyped-def]
    return _job_answer(task_id)


@bp.get("/<job_id>")
@require("read")
def get(job_id: str):  # type: ignore[no-untyped-def]
    return _job_answer(job_id)


def _cursor(raw: str) -> tuple[datetime, str]:
    try:
        stamp, _, job_id = base64.urlsafe_b64decode(raw.encode()).decode().partition("|")
        if "\x00" in job_id:
            raise ValueError("NUL in cursor")
        return datetime.fromisoformat(stamp), job_id
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_cursor", "the cursor is not one this API returned") from exc


@bp.get("")
@require("read")
def index():  # type: ignore[no-untyped-def]
    """The caller's jobs, newest first; ``?status=``, ``?limit=`` (≤ 100) and ``?cursor=`` from ``next``."""
    subject = current_principal().subject
    try:
        limit = int(request.args.get("limit", 20))
    except ValueError as exc:
        raise ApiError(400, "bad_limit", "limit must be an integer") from exc
    if not 1 <= limit <= 100:
        raise ApiError(400, "bad_limit", "limit must be between 1 and 100")
    query = select(Job).where(Job.owner == subject)
    wanted = request.args.get("status")
    if wanted is not None:
        if wanted not in set(JobStatus):
            raise ApiError(400, "bad_status", f"status must be one of {', '.join(JobStatus)}")
        query = query.where(Job.status == wanted)
    if request.args.get("cursor"):
        stamp, last_id = _cursor(request.args["cursor"])
        query = query.where(or_(Job.created_at < stamp, and_(Job.created_at == stamp, Job.id < last_id)))
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    with session_scope() as session:
        rows = list(session.scalars(query))
        docs = [public(job_document(job)) for job in rows[:limit]]
        last = rows[limit - 1] if len(rows) > limit else None
        next_cursor = (
            base64.urlsafe_b64encode(f"{last.created_at.isoformat()}|{last.id}".encode()).decode() if last else None
        )
    return jsonify({"items": docs, "next": next_cursor})

