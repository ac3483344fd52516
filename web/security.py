"""Response hardening: security headers on every response, and CORS only for listed origins.

The API serves JSON and nothing a browser should render, frame or cache: uploads are never served
back. A strict CSP and ``nosniff`` mean even a response a browser is tricked into loading runs nothing.
"""

from __future__ import annotations

import re

from flask import Flask, Response, request
from flask_cors import CORS

from core.settings import Settings, SettingsError

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# scheme://host[:port] with nothing else: flask-cors would read '*' or '^' as a regex, and an
# unanchored pattern lets https://trusted.example.evil.net through.
ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
# The console (web/console.py) is the one thing served here that a browser renders: its own files
# only, nothing inline, uploads previewed from blob: URLs the page made itself.
CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
               "media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'")
EXPOSED = ["Location", "Idempotent-Replayed", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining",
           "X-RateLimit-Reset"]


def allowed_origins(settings: Settings) -> list[str]:
    """CORS_ORIGINS as a list of exact origins; anything else stops start-up with the bad entry named."""
    origins = [o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip()]
    bad = [o for o in origins if not ORIGIN.fullmatch(o)]
    if bad:
        raise SettingsError(f"CORS_ORIGINS: not an exact origin (scheme://host[:port]): {', '.join(bad)}")
    return origins


def _harden(response: Response) -> Response:
    if request.path == "/console" or request.path.startswith("/console/"):
        response.headers.setdefault("Content-Security-Policy", CONSOLE_CSP)
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    # Everything here is per-caller or live state; the only cacheable document sets its own header.
    response.headers.setdefault("Cache-Control", "no-store")
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def install(app: Flask, settings: Settings) -> None:
    """Add the headers to every response and CORS for CORS_ORIGINS (none by default)."""
    origins = allowed_origins(settings)
    if origins:
        CORS(app, origins=origins, methods=["GET", "POST"], always_send=False, send_wildcard=False,
             supports_credentials=False, max_age=600, expose_headers=EXPOSED,
             allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-API-Key"])
    app.after_request(_harden)
