"""Batches: ``POST /v1/batches`` (many files and/or URLs, one id) and ``GET /v1/batches/<id>``.

Each item goes the road of ``POST /v1/jobs``: validated by the same code (web.uploads), fetched
under the same SSRF guard when it is a URL, stored and recorded by core.submissions (the files that
pass all in one transaction, ``submit_many``; each URL as it arrives, ``submit``). An item
that fails validation is reported in ``items`` with its error and does not fail the others; the
form-level fields (``text``, ``models``, ``callback_url``, the Idempotency-Key) apply to every item
and are checked once, before anything is made. Items are numbered in the order the server reads
them: the ``file`` parts first, then the ``url`` fields, each in the order sent.

Wake-ups: workers claim up to BATCH_MAX queued jobs per delivery from the jobs table, so one broker
message per BATCH_MAX jobs wakes enough workers (docs/api.md has the measurement); a job whose
wake-up is lost is re-sent by beat's sweep like any other.

Collecting: ``GET /v1/batches/<id>?wait=N&include=jobs`` answers once every item is final, with each
job's document, so a bulk client needs one request per batch, not one per job.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from flask import Blueprint, jsonify, request
from werkzeug.datastructures import FileStorage

from core.batches import MAX_ITEMS, batch_view, close_batch, item, open_batch, unfinished
from core.job_events import job_status
from core.models import JobStatus
from core.object_store import get_store
from core.submissions import NewMedia, Submission, submit, submit_many
from web import metrics
from web.auth import current_principal, require, settings
from web.errors import ApiError
from web.extensions import limiter
from web.jobs import public
from web.long_poll import ask_again, read_waiting, wait_seconds
from web.models_api import live_versions
from web.queue import enqueue_job, enqueue_webhook
from web.uploads import fetch_media, read_callback, read_models, read_text, upload_slot, validate_media

bp = Blueprint("batches", __name__, url_prefix="/v1/batches")
FETCH_THREADS = 4  # URLs of one batch fetched at once (each may hold MAX_UPLOAD_BYTES until submitted)
FETCH_BUDGET_SECONDS = 45.0  # all of a batch's fetches; below nginx's proxy_read_timeout (75 s)
UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)
WAKE_STRIDE: int | None = None  # one broker wake-up per this many queued jobs; None: BATCH_MAX


def _parts() -> tuple[list[FileStorage], list[str]]:
    return request.files.getlist("file"), request.form.getlist("url")


def _cost() -> int:
    """Each item counts against RATE_LIMIT_SUBMIT as one POST /v1/jobs would."""
    files, urls = _parts()
    return max(1, len(files) + len(urls))


def _submit_limit() -> str:
    return settings().rate_limit_submit


@dataclass(frozen=True)
class Outcome:
    index: int
    job_id: str | None
    status: str
    error: tuple[str, str] | None
    queued: bool  # a fresh queued job, to wake a worker for


def _public_items(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: i[k] for k in ("index", "job_id", "status", "error")} for i in view["items"]]


@bp.post("")
@require("submit")
@limiter.limit(_submit_limit, cost=_cost)
def create():  # type: ignore[no-untyped-def]
    cfg = settings()
    owner = current_principal().subject
    files, urls = _parts()
    if set(request.files) - {"file"}:
        raise ApiError(400, "unexpected_field", "send files in the multipart field 'file' only")
    if not files and not urls:
        raise ApiError(400, "empty_batch", "send files in 'file' parts and/or URLs in 'url' fields")
    if len(files) + len(urls) > MAX_ITEMS:
        raise ApiError(400, "too_many_items", f"a batch holds at most {MAX_ITEMS} items",
                       {"max_items": MAX_ITEMS})
    if urls and not cfg.url_submissions:
        raise ApiError(400, "missing_file", "this server does not fetch URLs (URL_SUBMISSIONS is off); "
                                            "send the media in 'file' parts")
    text = read_text(request, cfg)
    versions = live_versions()
    models = read_models(request, cfg, set(versions))
    callback = read_callback(request, cfg)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 200):
        raise ApiError(400, "bad_idempotency_key", "Idempotency-Key must be 1 to 200 characters")

    opened = open_batch(owner, len(files) + len(urls), key)
    status_url = f"/v1/batches/{opened.id}"
    if not opened.created:
        view = batch_view(opened.id, owner)
        assert view is not None
        response = jsonify({"id": opened.id, "status_url": status_url, "items": _public_items(view)})
        response.headers["Idempotent-Replayed"] = "true"
        response.headers["Location"] = status_url
        if unfinished(view):
            ask_again()
        return response

    wanted = {m: versions[m] for m in models}
    store = get_store()
    budget_end = time.monotonic() + FETCH_BUDGET_SECONDS

    def made(index: int, media: NewMedia, result: Submission) -> Outcome:
        metrics.SUBMITTED.labels(media.kind, "queued" if result.needs_enqueue else "known").inc()
        if not result.needs_enqueue and callback:
            enqueue_webhook(result.doc["id"])
        return Outcome(index, result.doc["id"], result.doc["status"], None, result.needs_enqueue)

    def one(index: int, read: Callable[[], NewMedia]) -> Outcome:
        """Read, check and submit one item; its bytes are dropped as soon as its job exists."""
        try:
            media = read()
        except ApiError as exc:
            return Outcome(index, None, "rejected", (exc.code, exc.message), False)
        return made(index, media, submit(store, owner, media, text, wanted, None, callback, batch_id=opened.id))

    def uploads() -> list[Outcome]:
        """The files: each checked alone (a bad one is refused alone), then all good ones recorded in
        one transaction (core.submissions.submit_many)."""
        checked: list[tuple[int, NewMedia]] = []
        refused: list[Outcome] = []
        for index, part in enumerate(files):
            try:
                checked.append((index, validate_media(part.read(cfg.max_upload_bytes + 1), cfg)))
            except ApiError as exc:
                refused.append(Outcome(index, None, "rejected", (exc.code, exc.message), False))
        results = submit_many(store, owner, [m for _, m in checked], text, wanted, callback, batch_id=opened.id)
        return refused + [made(index, media, result) for (index, media), result in zip(checked, results, strict=True)]

    def fetch(url: str) -> NewMedia:
        left = budget_end - time.monotonic()
        if left < 1:
            raise ApiError(422, "url_fetch_failed", "the batch's time for fetching URLs ran out")
        return fetch_media(url, cfg, deadline_seconds=min(cfg.url_fetch_deadline_seconds, left))

    outcomes: list[Outcome] = []
    failure: BaseException | None = None
    with upload_slot(cfg):
        try:
            outcomes += uploads()
            if urls:
                # A few URLs at a time, each fetched, checked and submitted by its own thread (with this
                # request's context, for the request id on its job).
                with ThreadPoolExecutor(max_workers=min(FETCH_THREADS, len(urls)),
                                        thread_name_prefix="batch-fetch") as pool:
                    futures = [pool.submit(contextvars.copy_context().run, one, len(files) + n,
                                           lambda url=url: fetch(url)) for n, url in enumerate(urls)]
                for future in futures:
                    if future.exception() is None:
                        outcomes.append(future.result())
                    else:
                        failure = failure or future.exception()
        except Exception as exc:  # a dependency failed part-way: list what was made, then answer 503
            failure = exc
        finally:
            outcomes.sort(key=lambda o: o.index)
            close_batch(opened.id, [item(o.index, o.job_id, o.error) for o in outcomes])
            queued = [o.job_id for o in outcomes if o.queued and o.job_id]
            for job_id in queued[::max(1, WAKE_STRIDE or cfg.batch_max)]:
                enqueue_job(job_id)  # a worker's delivery claims up to BATCH_MAX queued jobs
    if failure is not None:
        raise failure
    public = [{"index": o.index, "job_id": o.job_id, "status": o.status,
               "error": {"code": o.error[0], "message": o.error[1]} if o.error else None} for o in outcomes]
    response = jsonify({"id": opened.id, "status_url": status_url, "items": public})
    response.status_code = 202
    response.headers["Location"] = status_url
    if any(o.queued for o in outcomes):
        ask_again()
    return response


@bp.get("/<batch_id>")
@require("read")
def get(batch_id: str):  # type: ignore[no-untyped-def]
    """The caller's batch: counts by job status and every item; another caller's id is a 404.

    ``?include=jobs`` adds each item's job document (verdicts and all), read for the whole batch at
    once; ``?wait=N`` holds the answer until every item is final or N seconds pass. Together they are
    a bulk client's whole collection: one request for a batch's verdicts instead of one per job."""
    include = request.args.get("include", "")
    if include not in ("", "jobs"):
        raise ApiError(400, "bad_include", "include must be 'jobs' (or absent)")
    owner = current_principal().subject
    deadline = time.monotonic() + wait_seconds()
    view = _view(batch_id, owner, with_jobs=bool(include))
    while unfinished(view) and (left := deadline - time.monotonic()) > 0:
        # Wait for the newest unfinished item (claimed last, so usually finished last), then look again.
        last = next(i["job_id"] for i in reversed(view["items"]) if i["status"] in UNFINISHED)
        if read_waiting(last, partial(_status, last), settings(), left)["status"] in UNFINISHED:
            break  # the wait ran out, or this process holds its most waiters already
        view = _view(batch_id, owner, with_jobs=bool(include))
    for entry in view["items"]:
        if entry.get("job") is not None:
            entry["job"] = public(entry["job"])
    if unfinished(view):
        ask_again()
    return jsonify(view)


def _status(job_id: str) -> dict[str, Any]:
    """The status alone, for the wait; a job removed meanwhile by retention reads as expired."""
    return {"status": job_status(job_id) or JobStatus.EXPIRED}


def _view(batch_id: str, owner: str, with_jobs: bool) -> dict[str, Any]:
    view = batch_view(batch_id, owner, with_jobs)
    if view is None:
        raise ApiError(404, "not_found", f"no batch {batch_id!r}")
    return view
