"""A corpus of hostile and odd uploads, generated here (no downloads).

Each case says what a correct service does with it: ``reject`` (a 4xx in the error shape, nothing
stored), ``fail`` (accepted, then the job ends ``failed`` with a code), ``bad`` (either of those:
whether the header check in the web or the full decode in the worker notices first is a detail) or
``screen`` (a valid but unusual file, screened normally). Hostile files never get a 5xx, a crashed or a hung worker.
"""

from __future__ import annotations

import io
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class Case:
    name: str
    data: bytes
    expect: str  # reject | fail | bad | screen
    status: int | None = None  # for reject
    codes: tuple[str, ...] = ()  # acceptable error codes (reject or fail)
    filename: str = "upload.bin"
    form: dict[str, str] = field(default_factory=dict)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kw)
    return buffer.getvalue()


def _photo(size: tuple[int, int] = (96, 72), seed: int = 3) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _video(fourcc: str, suffix: str, frames: int, fps: float, size: tuple[int, int] = (64, 48)) -> bytes:
    import cv2

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / f"v{suffix}")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, size)
        rng = np.random.default_rng(0)
        for _ in range(frames):
            writer.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
        writer.release()
        return Path(path).read_bytes()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_with_text_bomb() -> bytes:
    """A valid 8x8 PNG carrying a zTXt chunk that inflates to 200 MB."""
    base = _save(Image.new("RGB", (8, 8)), "PNG")
    bomb = b"Comment\x00\x00" + zlib.compress(b"\x00" * 200_000_000, 9)
    return base[:33] + _png_chunk(b"zTXt", bomb) + base[33:]


def _zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.bin", b"\x00" * 50_000_000)
    return buffer.getvalue()


def _avi_with_playlist(canary_url: str, canary_file: str) -> bytes:
    """RIFF/AVI magic wrapping an HLS playlist that points at a local file and a local URL."""
    playlist = (f"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\n{canary_url}\n#EXTINF:10.0,\n"
                f"file://{canary_file}\n#EXT-X-ENDLIST\n").encode()
    body = b"AVI LIST" + struct.pack("<I", len(playlist) + 4) + b"hdrl" + playlist
    return b"RIFF" + struct.pack("<I", len(body)) + body


def corpus(canary_url: str, canary_file: str) -> list[Case]:
    jpeg = _save(_photo(), "JPEG")
    png = _save(_photo(), "PNG")
    gif = _save(_photo().convert("P"), "GIF")
    webp = _save(_photo(), "WEBP")
    mp4 = _video("mp4v", ".mp4", frames=12, fps=6)
    frames = [_photo((32, 32), seed=i).convert("P") for i in range(3000)]
    many_frame_gif = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°
    cases = [
        Case("empty file", b"", "reject", 400, ("empty_file",)),
        Case("truncated jpeg", jpeg[: len(jpeg) // 2], "bad", codes=("corrupt_image",), filename="a.jpg"),
        Case("truncated png", png[: len(png) // 2], "bad", codes=("corrupt_image",), filename="a.png"),
        Case("truncated gif", gif[: len(gif) // 2], "bad", codes=("corrupt_image",), filename="a.gif"),
        Case("truncated webp", webp[: len(webp) // 2], "bad", codes=("corrupt_image",), filename="a.webp"),
        Case("jpeg header only", jpeg[:20], "reject", 422, ("corrupt_image",), filename="a.jpg"),
        Case("png named .jpg (bytes decide)", png, "screen", filename="photo.jpg"),
        Case("pdf named .png", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj", "reject", 415,
             ("unsupported_media_type",), filename="a.png"),
        Case("jpeg+zip polyglot", jpeg + _zip_bomb(), "reject", 415, ("polyglot_file",), filename="a.jpg"),
        Case("png+zip polyglot", png + _zip_bomb(), "reject", 415, ("polyglot_file",), filename="a.png"),
        Case("decompression-bomb png", _save(Image.new("1", (30000, 30000)), "PNG"), "reject", 413,
             ("image_too_large",)),
        Case("decompression-bomb gif header", b"GIF89a" + struct.pack("<HH", 65535, 65535) + gif[10:], "reject",
             413, ("image_too_large",)),
        Case("png text-chunk bomb", _png_with_text_bomb(), "bad", codes=("corrupt_image",)),
        Case("zip bomb", _zip_bomb(), "reject", 415, ("unsupported_media_type",), filename="a.zip"),
        Case("svg with script", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
             "reject", 415, ("unsupported_media_type",), filename="a.svg"),
        Case("html", b"<!doctype html><script>fetch('/')</script>", "reject", 415, ("unsupported_media_type",)),
        Case("elf binary", b"\x7fELF\x02\x01\x01" + b"\x00" * 100, "reject", 415, ("unsupported_media_type",)),
        Case("nul bytes", b"\x00" * 4096, "reject", 415, ("unsupported_media_type",)),
        Case("animated gif, 3000 frames", many_frame_gif, "screen", filename="anim.gif"),
        Case("1x4000 strip", _save(_photo((1, 4000)), "PNG"), "screen"),
        Case("4000x1 strip", _save(_photo((4000, 1)), "PNG"), "screen"),
        Case("cmyk jpeg", _save(_photo().convert("CMYK"), "JPEG"), "screen"),
        Case("16-bit png", _save(Image.fromarray(np.full((40, 40), 40000, dtype=np.uint16)), "PNG"), "screen"),
        Case("grayscale jpeg", _save(_photo().convert("L"), "JPEG"), "screen"),
        Case("rgba png", _save(_photo().convert("RGBA"), "PNG"), "screen"),
        Case("exif-rotated jpeg", _save(_photo(), "JPEG", exif=exif), "screen"),
        Case("corrupt mp4", mp4[:48] + bytes(np.random.default_rng(1).integers(0, 255, 2000, dtype=np.uint8)),
             "fail", codes=("corrupt_video", "no_video_stream"), filename="a.mp4"),
        Case("truncated mp4", mp4[: len(mp4) // 3], "fail", codes=("corrupt_video", "no_video_stream"),
             filename="a.mp4"),
        Case("avi carrying an hls playlist", _avi_with_playlist(canary_url, canary_file), "fail",
             codes=("corrupt_video", "no_video_stream", "unsupported_format"), filename="a.avi"),
        Case("video longer than the limit", _video("mp4v", ".mp4", frames=150, fps=1), "fail",
             codes=("video_too_long",), filename="long.mp4"),
        Case("valid short mp4", mp4, "screen", filename="ok.mp4"),
        Case("text of 1 MB", png, "reject", 413, ("text_too_long", "payload_too_large"),
             form={"text": "a" * 1_000_000}),
        Case("text with nul", png, "reject", 422, ("invalid_text",), form={"text": "hi\x00there"}),
        Case("unknown model", png, "reject", 422, ("unknown_model",), form={"models": "nsfw,../../etc"}),
    ]
    return cases
