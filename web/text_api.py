"""POST /v1/text: synchronous text screening. The web enqueues to the text queue and waits."""

from __future__ import annotations

import logging

from celery.exceptions import TimeoutError as CeleryTimeout
from flask import Blueprint, jsonify, request

from web.auth import require, settings
from web.errors import ApiError
from web.models_api import live_versions
from web.queue import screen_texts

log = logging.getLogger(__name__)
bp = Blueprint("text", __name__, url_prefix="/v1/text")
MAX_TEXTS = 100
WAIT_SECONDS = 20.0


@bp.post("")
@require("submit")
def screen():  # type: ignore[no-untyped-def]
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "texts" not in body:
        raise ApiError(422, "invalid_body", 'send JSON {"texts": ["...", ...]}')
    texts = body["texts"]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ApiError(422, "invalid_body", "texts must be a non-empty list of strings")
    if len(texts) > MAX_TEXTS:
        raise ApiError(413, "too_many_texts", f"at most {MAX_TEXTS} texts per request", {"max_texts": MAX_TEXTS})
    limit = settings().max_text_chars
    long = [i for i, t in enumerate(texts) if len(t) > limit]
    if long:
        raise ApiError(413, "text_too_long", f"texts must be at most {limit} characters",
                       {"max_chars": limit, "indices": long[:20]})
    if "text" not in live_versions():
        raise ApiError(503, "model_unavailable", "the text model is not installed")
    try:
        results = screen_texts(texts, WAIT_SECONDS)
    except CeleryTimeout as exc:
        raise ApiError(503, "timeout", f"no text worker answered within {WAIT_SECONDS:.0f} s") from exc
    except Exception as exc:  # the worker raised (e.g. a model that fails verification): say so, not 500
        log.error("text screening failed: %s", exc)
        raise ApiError(503, "screening_failed", "the text worker could not screen these texts") from exc
    return jsonify({"model": "text", "results": results})
