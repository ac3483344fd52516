"""Image decoding with hard limits, shared by every pipeline (and by the web's header check)."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ml.types import MediaError, MediaItem

IMAGE_FORMATS = {"JPEG": "jpeg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}


def probe_image(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """Read only the header: (format, width, height). Raises MediaError for anything unacceptable."""
    try:
        with warnings.catch_warnings():
            # Our own limit below is stricter than Pillow's warning threshold.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, (width, height) = img.format or "", img.size
    except Image.DecompressionBombError as exc:
        raise MediaError("image_too_large", f"image exceeds the pixel limit: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MediaError("corrupt_image", f"cannot read the image header: {exc}") from exc
    if fmt not in IMAGE_FORMATS:
        raise MediaError("unsupported_format", f"image format {fmt or 'unknown'} is not accepted")
    if width <= 0 or height <= 0:
        raise MediaError("corrupt_image", "image has no pixels")
    if width * height > max_pixels:
        raise MediaError("image_too_large", f"{width}x{height} exceeds the limit of {max_pixels} pixels")
    return IMAGE_FORMATS[fmt], width, height


def check_image(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """The header (``probe_image``) plus a bounded look at the pixels, cheap enough for the web:
    a JPEG is decoded at 1/8 scale (DCT scaling), a PNG's chunks are CRC-checked without inflating the
    image, so a truncated or corrupt upload is refused with 422 instead of failing later in a worker."""
    fmt, width, height = probe_image(data, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if fmt == "jpeg":
                    img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                    img.load()
                elif fmt == "png":
                    img.verify()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise MediaError("corrupt_image", f"the image data is damaged: {exc}") from exc
    return fmt, width, height


def decode_image(data: bytes, max_pixels: int) -> MediaItem:
    """Decode the first frame to RGB uint8, applying EXIF orientation."""
    fmt, _, _ = probe_image(data, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            with img:
                img.seek(0)
                img.load()
                frame = ImageOps.exif_transpose(img).convert("RGB")
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise MediaError("corrupt_image", f"cannot decode the image: {exc}") from exc
    return MediaItem(kind="image", frames=[np.asarray(frame, dtype=np.uint8)], source_format=fmt)
