"""Image decoding: OpenCV's JPEG road gives Pillow's pixels, and every file it cannot judge goes to Pillow.

The reference below is Pillow's own road (load, EXIF transpose, RGB), as ``decode_image`` did before
JPEGs went to OpenCV: the two must agree pixel for pixel, or the models' verdicts would move."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps
from skimage import data as samples

from ml import image_decode
from ml.image_decode import decode_image
from ml.types import MediaError

LIMIT = 50_000_000


def pillow_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def encode(pixels: np.ndarray, mode: str | None = None, **options: object) -> bytes:
    image = Image.fromarray(pixels)
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(samples.astronaut()[:300, 40:440])  # not square: orientation shows


@pytest.fixture()
def counted(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray | None]:
    """What OpenCV's road returned for each call (None: it left the file to Pillow)."""
    seen: list[np.ndarray | None] = []
    real = image_decode._jpeg_rgb

    def spy(data: bytes, mode: str) -> np.ndarray | None:
        seen.append(out := real(data, mode))
        return out

    monkeypatch.setattr(image_decode, "_jpeg_rgb", spy)
    return seen


@pytest.mark.parametrize("options", [
    {"quality": 92}, {"quality": 60, "subsampling": 0}, {"quality": 80, "subsampling": 1},
    {"quality": 85, "progressive": True}, {"quality": 75, "optimize": True},
], ids=["4:2:0", "4:4:4", "4:2:2", "progressive", "optimized"])
def test_opencv_decodes_jpegs_to_pillows_pixels(astronaut: np.ndarray, options: dict[str, object],
                                                counted: list[np.ndarray | None]) -> None:
    jpeg = encode(astronaut, **options)
    frame = decode_image(jpeg, LIMIT).frames[0]
    assert counted and counted[0] is not None  # OpenCV decoded it
    assert frame.dtype == np.uint8 and frame.shape == (300, 400, 3)
    np.testing.assert_array_equal(frame, pillow_rgb(jpeg))


def test_greyscale_jpeg_becomes_three_equal_channels(astronaut: np.ndarray, counted: list[np.ndarray | None]) -> None:
    jpeg = encode(astronaut, "L", quality=90)
    frame = decode_image(jpeg, LIMIT).frames[0]
    assert counted[0] is not None and frame.shape == (300, 400, 3)
    np.testing.assert_array_equal(frame, pillow_rgb(jpeg))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_does(astronaut: np.ndarray, orientation: int,
                                                    counted: list[np.ndarray | None]) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    jpeg = encode(astronaut, quality=90, exif=exif.tobytes())
    frame = decode_image(jpeg, LIMIT).frames[0]
    assert counted[0] is not None
    expected = pillow_rgb(jpeg)
    assert frame.shape == expected.shape == ((400, 300, 3) if orientation >= 5 else (300, 400, 3))
    np.testing.assert_array_equal(frame, expected)


def test_truncated_jpeg_is_refused_not_padded(astronaut: np.ndarray, counted: list[np.ndarray | None]) -> None:
    jpeg = encode(astronaut, quality=90)
    with pytest.raises(MediaError) as err:
        decode_image(jpeg[: len(jpeg) * 2 // 3], LIMIT)
    assert err.value.code == "corrupt_image"
    assert counted == [None]  # left to Pillow, which refuses it


def test_trailing_bytes_and_cmyk_go_to_pillow(astronaut: np.ndarray, counted: list[np.ndarray | None]) -> None:
    trailing = encode(astronaut, quality=90) + b"camera maker's extra bytes"
    cmyk = encode(astronaut, "CMYK", quality=90)
    for jpeg in (trailing, cmyk):
        np.testing.assert_array_equal(decode_image(jpeg, LIMIT).frames[0], pillow_rgb(jpeg))
    assert counted == [None, None]


def test_other_formats_keep_pillow(astronaut: np.ndarray, counted: list[np.ndarray | None]) -> None:
    buffer = io.BytesIO()
    Image.fromarray(astronaut).save(buffer, "PNG")
    np.testing.assert_array_equal(decode_image(buffer.getvalue(), LIMIT).frames[0], astronaut)
    assert counted == []


def test_pixel_limit_holds_before_any_decoder(astronaut: np.ndarray) -> None:
    with pytest.raises(MediaError) as err:
        decode_image(encode(astronaut), 300 * 400 - 1)
    assert err.value.code == "image_too_large"
