"""Which local files are media worth uploading, and their content hash (for ``/v1/lookup``)."""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Iterable
from pathlib import Path

# The upload formats the server accepts by default (ALLOWED_FORMATS); the server still judges by bytes.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".webm"})
MEDIA_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS


def is_media(path: Path) -> bool:
    return path.suffix.lower() in MEDIA_EXTENSIONS


def media_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files named outright, plus the media files under each folder (recursively, hidden ones skipped).

    A file named outright is kept whatever its extension (the caller chose it); inside folders only
    media extensions count, so a folder of photos with a README in it uploads the photos. Duplicates
    (the same file reached twice) are dropped; the order is stable: arguments in order, folders sorted.
    """
    found: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(path)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path).parts
                if child.is_file() and is_media(child) and not any(p.startswith(".") for p in relative):
                    add(child)
        elif path.is_file():
            add(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return found


def content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
