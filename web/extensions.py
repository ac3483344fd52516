"""Extension singletons, wired to an app in the factory (nothing connects at import)."""

from __future__ import annotations

from flask import g, request
from flask_limiter import Limiter

import web.rate_limit_store  # noqa: F401  (registers the embedded mode's deepscreen-sqlite:// storage)


def rate_limit_key() -> str:
    # Per subject when authenticated (auth runs first), else per client address.
    principal = getattr(g, "principal", None)
    return f"sub:{principal.subject}" if principal else f"ip:{request.remote_addr}"


limiter = Limiter(key_func=rate_limit_key, headers_enabled=True)
