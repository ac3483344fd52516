"""Upload validation: one file (or one URL, fetched under core.url_fetch's SSRF guard), within the
size limit, a format we screen (by magic bytes), sane pixels. Uploads and fetched URLs pass the same
``validate_media``.

Headers and a bounded look at the pixels are read here (a JPEG at 1/8 scale, a PNG's checksums);
full decoding happens in the worker, where a failure ends the job ``failed`` with a code instead of
tying up a web process.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Request

from core.media_types import sniff
from core.settings import Settings
from core.submissions import NewMedia
from core.url_fetch import UrlRejected, fetch
from core.webhooks import CallbackRejected, check_callback_url
from ml.image_decode import check_image
from ml.types import MediaError
from web.errors import ApiError
from web.long_poll import ask_again

_slots: dict[tuple[int, int], threading.BoundedSemaphore] = {}
SLOT_WAIT_SECONDS = 30.0


@contextmanager
def upload_slot(settings: Settings) -> Iterator[None]:
    """Hold one of the process's WEB_UPLOAD_SLOTS while a submission's bytes are read and checked.

    A gthread process runs up to WEB_THREADS requests at once, and each upload may sit in memory at
    MAX_UPLOAD_BYTES: the slots keep that to a few per process (the request body stays in the socket,
    or nginx's buffer, until a slot is free). Long polls and reads never take one."""
    slots = _slots.setdefault((os.getpid(), settings.web_upload_slots),
                              threading.BoundedSemaphore(settings.web_upload_slots))
    if not slots.acquire(timeout=SLOT_WAIT_SECONDS):
        ask_again()
        raise ApiError(503, "server_busy", "every upload slot of this server is busy; try again shortly")
    try:
        yield
    finally:
        slots.release()


def read_upload(request: Request, settings: Settings) -> NewMedia:
    """The one file of a POST /v1/jobs, validated."""
    files = request.files.getlist("file")
    if len(request.files) > 1 or len(files) > 1:
        raise ApiError(400, "too_many_files", "send exactly one file, in the multipart field 'file'")
    if not files:
        raise ApiError(400, "missing_file", "send the media in the multipart field 'file'")
    return validate_media(files[0].read(settings.max_upload_bytes + 1), settings)


def read_media(request: Request, settings: Settings) -> NewMedia:
    """POST /v1/jobs: the ``file`` part, or the bytes behind a ``url`` field (fetched under the SSRF
    guard). A server with URL_SUBMISSIONS off answers a URL as if no file was sent (400 missing_file),
    which is what clients read as "upload the bytes instead"."""
    urls = request.form.getlist("url")
    if not urls or request.files:
        if urls:
            raise ApiError(400, "file_and_url", "send either a file or a url, not both")
        return read_upload(request, settings)
    if len(urls) > 1:
        raise ApiError(400, "too_many_files", "send exactly one url")
    return fetch_media(urls[0], settings)


def fetch_media(url: str, settings: Settings, deadline_seconds: float | None = None) -> NewMedia:
    """The media at ``url``, validated exactly as an upload is."""
    if not settings.url_submissions:
        raise ApiError(400, "missing_file", "this server does not fetch URLs (URL_SUBMISSIONS is off); "
                                            "send the media in the multipart field 'file'")
    try:
        fetched = fetch(url, max_bytes=settings.max_upload_bytes, allowed_hosts=settings.url_fetch_hosts,
                        timeout=settings.url_fetch_timeout_seconds,
                        deadline_seconds=deadline_seconds or settings.url_fetch_deadline_seconds)
    except UrlRejected as exc:
        raise ApiError(exc.status, exc.code, exc.message, exc.details) from exc
    return validate_media(fetched.data, settings)


def validate_media(data: bytes, settings: Settings) -> NewMedia:
    """Size, format by magic bytes, no archive polyglot, sane pixels: the checks every media passes,
    uploaded or fetched. ``data`` may be one byte over the limit (how an oversized read is seen)."""
    if len(data) > settings.max_upload_bytes:
        raise ApiError(413, "payload_too_large", f"the upload exceeds {settings.max_upload_bytes} bytes",
                       {"max_bytes": settings.max_upload_bytes})
    if not data:
        raise ApiError(400, "empty_file", "the uploaded file is empty")
    detected = sniff(data)
    if detected is None or detected[0] not in settings.formats:
        raise ApiError(415, "unsupported_media_type",
                       "the file's content is not an accepted format (judged by its bytes, not its name)",
                       {"accepted": sorted(settings.formats)})
    fmt, kind = detected
    if zipfile.is_zipfile(io.BytesIO(data)):
        # A valid image with an archive appended (JPEG+ZIP and friends) smuggles content past viewers.
        raise ApiError(415, "polyglot_file", "the file is both media and an archive; send the media alone")
    width = height = None
    if kind == "image":
        try:
            _, width, height = check_image(data, settings.max_image_pixels)
        except MediaError as exc:
            status = 413 if exc.code == "image_too_large" else 422
            raise ApiError(status, exc.code, exc.message) from exc
    return NewMedia(data, hashlib.sha256(data).hexdigest(), fmt, kind, width, height)


def read_text(request: Request, settings: Settings) -> str | None:
    text = request.form.get("text")
    if text is None:
        return None
    if len(text) > settings.max_text_chars:
        raise ApiError(413, "text_too_long", f"text exceeds {settings.max_text_chars} characters",
                       {"max_chars": settings.max_text_chars})
    if "\x00" in text:
        raise ApiError(422, "invalid_text", "text must not contain NUL characters")
    if "\ufffd" in text:
        # Werkzeug decodes form fields with errors="replace": U+FFFD marks bytes that were not UTF-8.
        raise ApiError(422, "invalid_text", "text must be valid UTF-8")
    return text or None


def read_flag(request: Request, name: str) -> bool:
    raw = (request.form.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ApiError(422, f"bad_{name}", f"{name} must be true or false")


def read_callback(request: Request, settings: Settings) -> str | None:
    url = request.form.get("callback_url")
    if not url:
        return None
    try:
        return check_callback_url(url, settings)
    except CallbackRejected as exc:
        raise ApiError(422, "bad_callback_url", str(exc)) from exc


def read_models(request: Request, settings: Settings, available: set[str]) -> list[str]:
    raw = request.form.get("models") or request.args.get("models") or ""
    names = [m.strip() for m in raw.split(",") if m.strip()] or settings.model_names
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ApiError(422, "unknown_model", f"no such model: {', '.join(unknown)}",
                       {"available": sorted(available)})
    return names
