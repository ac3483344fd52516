"""The Flask app factory: settings, extensions, blueprints, error handlers. Starts no threads."""

from __future__ import annotations

from typing import Any

from flask import Flask

from core import logs
from core.batches import MAX_ITEMS
from core.settings import Settings, get_settings
from web import (
    auth,
    batches,
    console,
    health,
    jobs,
    long_poll,
    lookup,
    metrics,
    models_api,
    multipart,
    openapi,
    reprocess_api,
    request_ids,
    security,
    text_api,
)
from web.errors import register_error_handlers
from web.extensions import limiter
from workers.celery_app import make_celery


def create_app(settings: Settings | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_bytes + 64 * 1024,  # multipart framing on top of the file
        MAX_FORM_MEMORY_SIZE=max(1024 * 1024, settings.max_text_chars * 4),  # text fields; files stream to disk
        MAX_FORM_PARTS=MAX_ITEMS + 20,  # a batch's items (web/batches.py) plus its other fields
        JSON_SORT_KEYS=False,
        # Without Redis (embedded mode) the counters go in a SQLite file every gunicorn process shares.
        RATELIMIT_STORAGE_URI=settings.redis_url or f"deepscreen-sqlite://{settings.data_dir / 'ratelimits.db'}",
        RATELIMIT_DEFAULT=settings.rate_limit_default,
        RATELIMIT_KEY_PREFIX="deepscreen",
        RATELIMIT_SWALLOW_ERRORS=True,  # a Redis outage must not turn every request into a 500
    )
    if test_config:
        app.config.update(test_config)
    logs.configure(settings.log_level, settings.log_format, "web")
    multipart.install()  # werkzeug's form parser with a ~3x cheaper multipart decoder (web/multipart.py)
    app.extensions["deepscreen.settings"] = settings
    app.extensions["deepscreen.celery"] = make_celery(settings)

    request_ids.install(app)  # first: every later line of the request carries its id
    app.before_request(auth.load_principal)  # before the limiter, which keys on the caller
    long_poll.install(app)  # before the limiter: its after_request then sees the limiter's Retry-After
    limiter.init_app(app)
    metrics.instrument(app)
    register_error_handlers(app)
    security.install(app, settings)

    for bp in (auth.bp, jobs.bp, jobs.status_bp, batches.bp, models_api.bp, lookup.bp, text_api.bp, reprocess_api.bp):
        app.register_blueprint(bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(console.bp)
    limiter.exempt(health.bp)
    return app
