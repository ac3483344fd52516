"""GET /v1/lookup/<sha256>: a known verdict for content, without uploading it (browser extension).

Only verdicts at the live model versions are returned, and nothing about who uploaded the content.
"""

from __future__ import annotations

import re

from flask import Blueprint, jsonify
from sqlalchemy import select

from core.db import session_scope
from core.jobs import NOT_VALIDATED
from core.models import Job, JobStatus, Result
from web.auth import require
from web.errors import ApiError
from web.models_api import live_versions

bp = Blueprint("lookup", __name__, url_prefix="/v1/lookup")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@bp.get("/<sha256>")
@require("read")
def lookup(sha256: str):  # type: ignore[no-untyped-def]
    sha256 = sha256.lower()
    if not SHA256.fullmatch(sha256):
        raise ApiError(400, "bad_sha256", "give the content's sha256 as 64 hex characters")
    live = live_versions()
    query = (
        select(Result).join(Job)
        .where(Job.media_sha256 == sha256, Job.status == JobStatus.SUCCEEDED, Job.text.is_(None),
               Result.kind != "shadow")
        .order_by(Result.created_at.desc())
    )
    results: dict[str, dict] = {}
    with session_scope() as session:
        for r in session.scalars(query):
            if r.model not in results and live.get(r.model) == r.model_version:
                results[r.model] = {"model_version": r.model_version, "label": r.label, "score": r.score,
                                    "scores": r.scores, "validation": r.validation or NOT_VALIDATED}
    if not results:
        raise ApiError(404, "not_found", "no verdict is known for this content at the live model versions")
    return jsonify({"sha256": sha256, "results": results})
