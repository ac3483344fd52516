"""Keep credentials out of logs: Authorization values, JWTs and API keys are replaced by ``[REDACTED]``.

A filter on a logger sees only records made on that logger, and one on a handler misses handlers added
later (gunicorn's, pytest's). ``install()`` therefore applies the filter where every record is made (the
log record factory), so any handler in the process, gunicorn's access log included, gets redacted text.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[REDACTED]"
PATTERNS = [
    # A header or field named like a credential, then its value (with or without a scheme word).
    re.compile(r"(?i)((?:authorization|x-api-key|api_key|access_token)[\"']?\s*[:=]\s*[\"']?)"
               r"(?:(?:bearer|basic)\s+)?[^\s\"',;}]+"),
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"()\beyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){0,2}"),  # a JWT, or any part of one
    re.compile(r"()\bds_[0-9a-f]{6,}_[A-Za-z0-9_-]+"),  # an API key: ds_<id hex>_<secret>
]


def redact(text: str) -> str:
    for pattern in PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and traceback) with credentials redacted; never drops a record."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it for the handler to report
            return True
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._redacted = True
        return True


_FILTER = RedactingFilter()


def install() -> None:
    """Redact every record made in this process from now on; safe to call more than once."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "_deepscreen_redacting", False):
        return

    def make_record(*args: object, **kwargs: object) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        _FILTER.filter(record)
        return record

    make_record._deepscreen_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)
    for name in ("", "gunicorn.error", "gunicorn.access"):  # and on handlers that already exist
        for handler in logging.getLogger(name).handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
