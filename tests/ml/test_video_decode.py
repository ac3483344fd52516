"""Video decoding: even sampling, limits, hostile and broken containers."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from ml.types import MediaError
from ml.video_decode import MAX_SIDE, _options, decode_video, probe_video
from tests.ml.conftest import astronaut_frames, write_video


def test_samples_frames_evenly_across_the_clip(short_video_mp4: bytes) -> None:
    item = decode_video(short_video_mp4, "mp4", max_seconds=10, max_frames=4)
    assert item.kind == "video" and item.source_format == "mp4"
    assert item.fps == pytest.approx(10.0)
    assert item.duration == pytest.approx(2.0, abs=0.15)
    assert len(item.frames) == len(item.frame_indices) == 4
    # Centres of four equal slices of 20 frames: one frame from each quarter, in order.
    assert [i // 5 for i in item.frame_indices] == [0, 1, 2, 3]
    for frame in item.frames:
        assert frame.dtype == np.uint8 and frame.shape == (384, 384, 3)


def test_sampled_frames_are_the_frames_at_those_indices(short_video_mp4: bytes) -> None:
    originals = astronaut_frames(20)
    item = decode_video(short_video_mp4, "mp4", max_seconds=10, max_frames=3)
    for index, frame in zip(item.frame_indices, item.frames, strict=True):
        errors = [np.abs(frame.astype(int) - o.astype(int)).mean() for o in originals]
        assert int(np.argmin(errors)) == index  # lossy codec, but the nearest original is the right one


def test_short_clip_gives_every_frame_when_asked_for_more(short_video_mp4: bytes) -> None:
    item = decode_video(short_video_mp4, "mp4", max_seconds=10, max_frames=100)
    assert item.frame_indices == list(range(20))


def test_probe_reads_the_header(short_video_mp4: bytes) -> None:
    duration, width, height = probe_video(short_video_mp4, "mp4")
    assert (width, height) == (384, 384)
    assert duration == pytest.approx(2.0, abs=0.15)


@pytest.mark.parametrize(("fmt", "fourcc"), [("avi", "MJPG"), ("mov", "mp4v"), ("webm", "VP80")])
def test_other_containers(tmp_path: Path, fmt: str, fourcc: str) -> None:
    data = write_video(tmp_path / f"clip.{fmt}", astronaut_frames(10, size=128), fourcc=fourcc)
    item = decode_video(data, fmt, max_seconds=10, max_frames=5)
    assert len(item.frames) == 5 and item.frames[0].shape == (128, 128, 3)


def test_too_long(short_video_mp4: bytes) -> None:
    with pytest.raises(MediaError) as err:
        decode_video(short_video_mp4, "mp4", max_seconds=1.0, max_frames=4)
    assert err.value.code == "video_too_long"


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_mp4_is_corrupt(short_video_mp4: bytes, cut: float) -> None:
    # OpenCV writes the MP4 index (moov) at the end: a truncated upload has no index at all.
    with pytest.raises(MediaError) as err:
        decode_video(short_video_mp4[: int(len(short_video_mp4) * cut)], "mp4", 10, 4)
    assert err.value.code == "corrupt_video"


@pytest.mark.parametrize("fmt", ["mp4", "mov", "avi", "webm"])
def test_garbage_is_corrupt(fmt: str) -> None:
    noise = np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    with pytest.raises(MediaError) as err:
        decode_video(noise, fmt, 10, 4)
    assert err.value.code == "corrupt_video"


def test_audio_only_file_has_no_video_stream() -> None:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(MediaError) as err:
        decode_video(buffer.getvalue(), "mp4", 10, 4)
    assert err.value.code == "no_video_stream"


def test_large_frames_are_downscaled(tmp_path: Path) -> None:
    frames = [np.full((1000, 2400, 3), 40 * i, dtype=np.uint8) for i in range(3)]
    item = decode_video(write_video(tmp_path / "wide.mp4", frames), "mp4", 10, 2)
    height, width = item.frames[0].shape[:2]
    assert width == MAX_SIDE and abs(height - 800) <= 2


def test_unknown_format_refused(short_video_mp4: bytes) -> None:
    with pytest.raises(MediaError) as err:
        decode_video(short_video_mp4, "hls", 10, 4)
    assert err.value.code == "unsupported_format"


def _playlist(target: Path) -> bytes:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\n{target}\n#EXT-X-ENDLIST\n".encode()


def test_playlist_pointing_at_a_local_file_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "local.avi"
    write_video(secret, astronaut_frames(6, size=64), fourcc="MJPG")
    playlist = _playlist(secret)
    # The attack is real: FFmpeg with default options follows the playlist and decodes the local file …
    with av.open(io.BytesIO(playlist), format="hls") as container:
        assert sum(1 for _ in container.decode(video=0)) == 6
    # … but not with our options, even when told it is a playlist …
    with pytest.raises(av.FFmpegError):
        av.open(io.BytesIO(playlist), format="hls", options=_options())
    # … and an upload claiming to be a video is parsed only as that container.
    for fmt in ("mp4", "mov", "avi", "webm"):
        with pytest.raises(MediaError) as err:
            decode_video(playlist, fmt, 10, 4)
        assert err.value.code == "corrupt_video"
