"""One entry point from stored bytes to a MediaItem, choosing the image or video decoder by format."""

from __future__ import annotations

from dataclasses import dataclass

from ml.image_decode import decode_image
from ml.types import MediaError, MediaItem

IMAGE_FORMATS = {"jpeg", "png", "gif", "webp"}
VIDEO_FORMATS = {"mp4", "mov", "avi", "webm"}


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = 40_000_000
    max_video_seconds: float = 120.0
    max_video_frames: int = 32


def decode(data: bytes, fmt: str, limits: DecodeLimits, text: str | None = None) -> MediaItem:
    if fmt in IMAGE_FORMATS:
        item = decode_image(data, limits.max_pixels)
    elif fmt in VIDEO_FORMATS:
        from ml.video_decode import decode_video  # PyAV is imported only by workers that see videos

        item = decode_video(data, fmt, limits.max_video_seconds, limits.max_video_frames)
    else:
        raise MediaError("unsupported_format", f"format {fmt!r} cannot be screened")
    item.text = text
    return item
