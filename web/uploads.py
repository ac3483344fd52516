"""Upload validation: one file, within the size limit, a format we screen (by magic bytes), sane pixels.

Headers and a bounded look at the pixels are read here (a JPEG at 1/8 scale, a PNG's checksums);
full decoding happens in the worker, where a failure ends the job ``failed`` with a code instead of
tying up a web process.
"""

from __future__ import annotations

import hashlib
import io
import zipfile

from flask import Request

from core.media_types import sniff
from core.settings import Settings
from core.submissions import NewMedia
from core.webhooks import CallbackRejected, check_callback_url
from ml.image_decode import check_image
from ml.types import MediaError
from web.errors import ApiError


def read_upload(request: Request, settings: Settings) -> NewMedia:
    files = request.files.getlist("file")
    if len(request.files) > 1 or len(files) > 1:
        raise ApiError(400, "too_many_files", "send exactly one file, in the multipart field 'file'")
    if not files:
        raise ApiError(400, "missing_file", "send the media in the multipart field 'file'")
    data = files[0].read(settings.max_upload_bytes + 1)
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
