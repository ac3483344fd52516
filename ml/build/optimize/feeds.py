"""Model inputs for calibration, parity and benchmarks, made from images the way the pipeline would.

A pipeline that knows its own preprocessing best may define
``model_feeds(role, items) -> list[dict[str, np.ndarray]]``; otherwise the manifest's
``preprocessing`` (resize, mean, std, channel order) and the ONNX input shape are followed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ml.image_decode import decode_image
from ml.manifest import Manifest
from ml.types import MediaError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif"}


def image_frames(folder: Path, limit: int, max_pixels: int = 40_000_000) -> list[np.ndarray]:
    """Up to ``limit`` decodable images from ``folder`` (recursively, in name order); others are skipped."""
    frames: list[np.ndarray] = []
    for path in sorted(folder.rglob("*")):
        if len(frames) >= limit:
            break
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            frames.append(decode_image(path.read_bytes(), max_pixels).frames[0])
        except MediaError:
            continue
    return frames


def generated_frames(count: int, size: int = 256, seed: int = 0) -> list[np.ndarray]:
    """Photo-like stand-ins (smooth colour fields with edges) when the operator gives no images.

    Calibrating on these is a last resort: ranges fit what the model sees on them, not on real uploads.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        coarse = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
        smooth = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
        img = np.asarray(smooth, dtype=np.int16)
        # A bright rectangle and some sensor-like noise, so edges and textures are represented too.
        y, x = rng.integers(0, size // 2, 2)
        img[y:y + size // 3, x:x + size // 3] += 60
        img += rng.normal(0, 6, img.shape).astype(np.int16)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def _layout(shape: Sequence[object], declared: str | None) -> str:
    if declared in ("NCHW", "NHWC"):
        return declared
    return "NHWC" if len(shape) == 4 and shape[-1] == 3 else "NCHW"


def _size(shape: Sequence[object], layout: str, preprocessing: dict) -> tuple[int, int]:
    dims = shape[1:3] if layout == "NHWC" else shape[2:4]
    if all(isinstance(d, int) and d > 0 for d in dims):
        return int(dims[0]), int(dims[1])  # type: ignore[call-overload]
    side = int(preprocessing.get("input_size") or preprocessing.get("center_crop") or 224)
    return side, side


def manifest_preprocess(
    frame: np.ndarray, manifest: Manifest, role: str, shape: Sequence[object],
) -> np.ndarray:
    """One frame → one model input row, following the manifest's declared preprocessing."""
    pre = manifest.preprocessing
    layout = _layout(shape, manifest.inputs.get(role, {}).get("layout"))
    height, width = _size(shape, layout, pre)
    resized = Image.fromarray(frame).resize((width, height), Image.Resampling.BILINEAR)
    x = np.asarray(resized, dtype=np.float32)
    if pre.get("channel_order", "RGB").upper() == "BGR":
        x = x[..., ::-1]
    mean = np.asarray(pre.get("mean", [0.0, 0.0, 0.0]), dtype=np.float32)
    std = np.asarray(pre.get("std", [1.0, 1.0, 1.0]), dtype=np.float32)
    if "scale" in pre:
        x = x * float(pre["scale"])
    elif "mean" in pre and float(mean.max()) <= 1.0:
        x = x / 255.0  # means such as ImageNet's 0.485 are on a [0, 1] scale
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1) if layout == "NCHW" else x, dtype=np.float32)


def model_feeds(
    manifest: Manifest, role: str, frames: list[np.ndarray], batch: int = 1, pipeline: object | None = None,
) -> list[dict[str, np.ndarray]]:
    """Feeds of ``batch`` rows each for the ONNX file of ``role`` (its FP32 file defines names and shapes)."""
    from ml.types import MediaItem

    custom = getattr(pipeline, "model_feeds", None)
    if callable(custom):
        items = [MediaItem(kind="image", frames=[frame]) for frame in frames]
        rows: list[dict[str, np.ndarray]] = custom(role, items)
        return _rebatch(rows, batch)
    import onnxruntime as ort

    session = ort.InferenceSession(str(manifest.path(role)), providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    if len(session.get_inputs()) != 1:
        raise ValueError(f"{manifest.name}/{role} takes several inputs; its pipeline must define model_feeds")
    singles = [{spec.name: manifest_preprocess(f, manifest, role, spec.shape)[None]} for f in frames]
    return _rebatch(singles, batch)


def _rebatch(rows: list[dict[str, np.ndarray]], batch: int) -> list[dict[str, np.ndarray]]:
    """Regroup one-or-more-row feeds into feeds of ``batch`` rows (the last may be shorter)."""
    if not rows:
        return []
    names = list(rows[0])
    stacked = {n: np.concatenate([r[n] for r in rows]) for n in names}
    total = len(stacked[names[0]])
    return [{n: stacked[n][i:i + batch] for n in names} for i in range(0, total, max(1, batch))]
