"""The web console: static ES modules and CSS under /console/, no build step.

The console is a client of the public API like any other (same origin, Bearer tokens); this
blueprint only serves its files. Its CSP (web/security.py) allows scripts and styles from this
origin only, so nothing inline ever runs.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, redirect, send_from_directory

from web.extensions import limiter

STATIC = Path(__file__).resolve().parent / "static" / "console"
bp = Blueprint("console", __name__)


@bp.get("/")
@limiter.exempt
def root() -> Response:
    return redirect("/console/", code=302)  # type: ignore[return-value]


@bp.get("/console")
@limiter.exempt
def console_no_slash() -> Response:
    return redirect("/console/", code=301)  # type: ignore[return-value]


@bp.get("/console/")
@limiter.exempt
def index() -> Response:
    return _send("index.html")


@bp.get("/console/<path:name>")
@limiter.exempt
def asset(name: str) -> Response:
    return _send(name)


def _send(name: str) -> Response:
    # send_from_directory refuses paths that leave STATIC; max_age=0 keeps a new release visible at once.
    response = send_from_directory(STATIC, name, max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response
