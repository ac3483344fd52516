"""Video decoding with hard limits: a few frames sampled evenly across the clip, never the whole clip in memory.

Uploaded containers are hostile input. FFmpeg can follow references out of a file (HLS playlists,
``concat`` lists, AVI GAB2 subtitle streams that hide a playlist, MOV data references), so we:

* open from an in-memory file object only (there is no path or URL for FFmpeg to resolve),
* force the demuxer named by the already-validated format instead of letting FFmpeg probe,
* pass an empty ``protocol_whitelist`` (no ``file:``, ``http:``… for any nested open) and a
  ``format_whitelist`` that nested demuxers inherit, so a playlist hidden inside cannot be parsed,
* check the container FFmpeg actually opened is one we accept.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

import numpy as np

from ml.types import MediaError, MediaItem

# Our format name → FFmpeg demuxer to force, and the demuxer names we accept once opened.
DEMUXERS = {"mp4": "mp4", "mov": "mov", "avi": "avi", "webm": "webm"}
FORMAT_WHITELIST = "mov,mp4,m4a,3gp,3g2,mj2,avi,matroska,webm"
ACCEPTED_CONTAINERS = frozenset(FORMAT_WHITELIST.split(","))
MAX_SIDE = 1920  # decoded frames are downscaled so their long side is at most this
MAX_PIXELS = 4096 * 4096  # refuse streams whose frames are larger than this before decoding any


def _options() -> dict[str, str]:
    return {
        "protocol_whitelist": "",  # nested opens may use no protocol at all
        "format_whitelist": FORMAT_WHITELIST,
        "enable_drefs": "0",  # MOV: never follow external data references
        "probesize": str(5 * 1024 * 1024),
        "analyzeduration": str(5 * 1_000_000),
    }


@contextmanager
def _open(data: bytes, fmt: str) -> Iterator[tuple[Any, Any]]:
    """Open ``data`` as the forced demuxer for ``fmt`` and yield (container, video stream)."""
    import av

    demuxer = DEMUXERS.get(fmt)
    if demuxer is None:
        raise MediaError("unsupported_format", f"video format {fmt!r} is not accepted")
    try:
        container = av.open(io.BytesIO(data), mode="r", format=demuxer, options=_options())
    except av.FFmpegError as exc:
        raise MediaError("corrupt_video", f"cannot open the video: {exc}") from exc
    try:
        if not set(container.format.name.split(",")) <= ACCEPTED_CONTAINERS:
            raise MediaError("unsupported_format", f"container {container.format.name} is not accepted")
        if not container.streams.video:
            raise MediaError("no_video_stream", "the file holds no video stream")
        yield container, container.streams.video[0]
    finally:
        container.close()


def _header_duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _demuxed_duration(container: Any, stream: Any) -> float | None:
    """Duration from packet timestamps: cheap (no decoding), for containers whose header omits it."""
    import av

    end = None
    try:
        for packet in container.demux(stream):
            if packet.pts is None or packet.time_base is None:
                continue
            stop = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            end = stop if end is None else max(end, stop)
    except av.FFmpegError as exc:
        raise MediaError("corrupt_video", f"cannot read the video packets: {exc}") from exc
    container.seek(0)
    return end


def _size(stream: Any) -> tuple[int, int]:
    width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
    if width <= 0 or height <= 0:
        raise MediaError("corrupt_video", "the video stream has no frame size")
    if width * height > MAX_PIXELS:
        raise MediaError("video_too_large", f"{width}x{height} frames exceed the limit of {MAX_PIXELS} pixels")
    return width, height


def probe_video(data: bytes, fmt: str) -> tuple[float | None, int, int]:
    """Read only the header: (duration in seconds or None when the header omits it, width, height)."""
    with _open(data, fmt) as (container, stream):
        width, height = _size(stream)
        return _header_duration(container, stream), width, height


def _target_size(width: int, height: int) -> tuple[int, int]:
    long_side = max(width, height)
    if long_side <= MAX_SIDE:
        return width, height
    scale = MAX_SIDE / long_side
    # Even sizes keep the swscale path simple for subsampled chroma.
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def _sample_times(duration: float, count: int) -> list[float]:
    """Centres of ``count`` equal slices of the clip: never the very first or last frame alone."""
    return [(i + 0.5) * duration / count for i in range(count)]


def decode_video(data: bytes, fmt: str, max_seconds: float, max_frames: int) -> MediaItem:
    """Decode up to ``max_frames`` RGB uint8 frames sampled evenly across the clip.

    The clip is decoded once, front to back, and only the chosen frames are converted to RGB, so
    memory stays at ``max_frames`` frames whatever the length. Raises MediaError: ``video_too_long``,
    ``corrupt_video``, ``no_video_stream``, ``video_too_large``, ``unsupported_format``.
    """
    import av

    if max_frames < 1:
        raise ValueError("max_frames must be at least 1")
    with _open(data, fmt) as (container, stream):
        width, height = _size(stream)
        duration = _header_duration(container, stream) or _demuxed_duration(container, stream)
        if duration is not None and duration > max_seconds:
            raise MediaError("video_too_long", f"the video lasts {duration:.1f} s; the limit is {max_seconds:g} s")
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        out_w, out_h = _target_size(width, height)
        stream.thread_type = "AUTO"
        # Short clips (or clips whose length no header or packet tells): every frame, up to max_frames.
        every = duration is None or (fps is not None and duration * fps <= max_frames + 0.5)
        targets = [] if every or duration is None else _sample_times(duration, max_frames)
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        frames: list[np.ndarray] = []
        indices: list[int] = []
        seen = 0
        try:
            for index, frame in enumerate(container.decode(stream)):
                seen = index + 1
                t = _frame_time(frame, index, fps, start)
                if t is not None and t > max_seconds:
                    raise MediaError("video_too_long", f"the video runs past {max_seconds:g} s")
                if targets and t is not None and t + 1e-6 >= targets[0]:
                    while targets and t + 1e-6 >= targets[0]:
                        targets.pop(0)
                    frames.append(_to_rgb(frame, out_w, out_h))
                    indices.append(index)
                    if not targets:
                        break
                elif every:
                    frames.append(_to_rgb(frame, out_w, out_h))
                    indices.append(index)
                    if len(frames) >= max_frames:
                        break
        except av.FFmpegError as exc:
            if not frames:
                raise MediaError("corrupt_video", f"cannot decode the video: {exc}") from exc
            # A damaged tail after usable frames: screen what decoded rather than fail the job.
        if not frames:
            raise MediaError("corrupt_video", f"no frame of the video could be decoded ({seen} read)")
    return MediaItem(
        kind="video", frames=frames, frame_indices=indices, fps=fps, duration=duration, source_format=fmt,
    )


def _frame_time(frame: Any, index: int, fps: float | None, start: float) -> float | None:
    """Seconds since the stream's first timestamp (streams need not start at 0)."""
    if frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * Fraction(frame.time_base)) - start
    return index / fps if fps else None


def _to_rgb(frame: Any, width: int, height: int) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
    return np.ascontiguousarray(rgb, dtype=np.uint8)
