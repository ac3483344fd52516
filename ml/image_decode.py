"""Image decoding with hard limits, shared by every pipeline (and by the web's header check)."""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ml.types import MediaError, MediaItem

IMAGE_FORMATS = {"JPEG": "jpeg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}


JPEG_EOI = b"\xff\xd9"


def probe_image(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """Read only the header: (format, width, height). Raises MediaError for anything unacceptable."""
    fmt, width, height, _ = _probe(data, max_pixels)
    return fmt, width, height


def _probe(data: bytes, max_pixels: int) -> tuple[str, int, int, str]:
    """``probe_image`` plus the header's colour mode (for choosing the decoder)."""
    try:
        with warnings.catch_warnings():
            # Our own limit below is stricter than Pillow's warning threshold.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, (width, height), mode = img.format or "", img.size, img.mode
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
    return IMAGE_FORMATS[fmt], width, height, mode


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


def _jpeg_rgb(data: bytes, mode: str) -> np.ndarray | None:
    """A whole YCbCr or greyscale JPEG decoded by OpenCV, or None where Pillow must decide.

    Both libraries decode with libjpeg-turbo (the same pixels; tests/ml/test_image_decode.py checks
    it, EXIF orientations included), but OpenCV hands back RGB in one buffer where Pillow's road
    (load, EXIF transpose, convert, array) copies the frame three times: ~40 % less CPU per 512 px
    photo. A file that does not end with its EOI marker (truncated, or trailing bytes) goes to Pillow,
    which refuses truncation where OpenCV would pad the image grey; so does a CMYK JPEG."""
    if mode not in ("RGB", "L") or not data.endswith(JPEG_EOI):
        return None
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    return frame if frame is not None and frame.size else None


def decode_image(data: bytes, max_pixels: int) -> MediaItem:
    """Decode the first frame to RGB uint8, applying EXIF orientation."""
    fmt, _, _, mode = _probe(data, max_pixels)
    if fmt == "jpeg" and (rgb := _jpeg_rgb(data, mode)) is not None:
        return MediaItem(kind="image", frames=[rgb], source_format=fmt)
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
