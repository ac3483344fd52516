"""What an upload is, judged by its bytes (magic numbers), never by its name or declared type."""

from __future__ import annotations

import filetype

# filetype's extension → our format name and kind
FORMATS: dict[str, tuple[str, str]] = {
    "jpg": ("jpeg", "image"),
    "png": ("png", "image"),
    "gif": ("gif", "image"),
    "webp": ("webp", "image"),
    "mp4": ("mp4", "video"),
    "mov": ("mov", "video"),
    "avi": ("avi", "video"),
    "webm": ("webm", "video"),
}

CONTENT_TYPES = {
    "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
    "mp4": "video/mp4", "mov": "video/quicktime", "avi": "video/x-msvideo", "webm": "video/webm",
}


def sniff(head: bytes) -> tuple[str, str] | None:
    """(format, kind) from the first bytes of a file, or None when it is none we screen."""
    guess = filetype.guess(head[:8192])
    if guess is None:
        return None
    return FORMATS.get(guess.extension)
