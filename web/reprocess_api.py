"""Reprocessing runs for admins: start one, follow it, cancel it, read its flip report (JSON or CSV)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify, request

from core import reprocess
from core.reprocess import RunError
from web.auth import current_principal, require
from web.errors import ApiError
from web.models_api import live_versions, repository
from web.queue import enqueue_reprocess

bp = Blueprint("reprocess", __name__, url_prefix="/v1/reprocess")


def _run_or_404(run_id: str) -> dict:
    try:
        return reprocess.get(run_id)
    except RunError as exc:
        raise ApiError(404, exc.code, str(exc)) from exc


@bp.post("")
@require("admin")
def start():  # type: ignore[no-untyped-def]
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise ApiError(422, "invalid_body", 'send JSON {"model": NAME, "version"?, "since"?, "only_positive"?}')
    model = body["model"]
    version = body.get("version") or live_versions().get(model)
    if not isinstance(version, str) or version not in repository().versions(model):
        raise ApiError(422, "unknown_model", f"no version {version!r} of model {model!r}")
    since = None
    if body.get("since") is not None:
        try:
            since = datetime.fromisoformat(str(body["since"]))
        except ValueError as exc:
            raise ApiError(422, "bad_since", "since must be an ISO 8601 date or time") from exc
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
    rate = body.get("rate")
    if rate is not None and (not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate <= 0):
        raise ApiError(422, "bad_rate", "rate must be a positive number of jobs per second")
    run = reprocess.start(model, version, by=current_principal().subject, since=since,
                          only_positive=bool(body.get("only_positive")), rate=rate)
    enqueue_reprocess(run["id"])
    response = jsonify(run)
    response.status_code = 202
    response.headers["Location"] = f"/v1/reprocess/{run['id']}"
    return response


@bp.get("")
@require("admin")
def index():  # type: ignore[no-untyped-def]
    return jsonify({"items": reprocess.runs()})


@bp.get("/<run_id>")
@require("admin")
def get(run_id: str):  # type: ignore[no-untyped-def]
    return jsonify(_run_or_404(run_id))


@bp.post("/<run_id>/cancel")
@require("admin")
def cancel(run_id: str):  # type: ignore[no-untyped-def]
    _run_or_404(run_id)
    return jsonify(reprocess.cancel(run_id))


@bp.get("/<run_id>/flips")
@require("admin")
def flips(run_id: str):  # type: ignore[no-untyped-def]
    _run_or_404(run_id)
    report = reprocess.flip_report(run_id)
    if request.args.get("format") == "csv":
        return Response(reprocess.flip_csv(report), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="flips-{run_id}.csv"'})
    return jsonify(report)
