"""Add an INT8 / FP16 variant to an existing model version, measured before it is registered."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.build.optimize.feeds import model_feeds
from ml.build.optimize.parity import ParityReport, parity, time_session
from ml.build.optimize.quantize import convert_fp16, quantize_int8_dynamic, quantize_int8_static
from ml.manifest import Manifest, file_entry

MODES = {"int8-static": "int8", "int8-dynamic": "int8", "fp16": "fp16"}


class VariantRefused(RuntimeError):
    """The variant was made but is not worth registering (e.g. INT8 slower than FP32 on this CPU)."""


@dataclass
class VariantResult:
    role: str
    path: Path
    parity: ParityReport
    fp32_seconds: float
    variant_seconds: float
    registered: bool

    @property
    def speedup(self) -> float:
        return self.fp32_seconds / self.variant_seconds if self.variant_seconds else float("nan")


def make_variant(
    manifest: Manifest, role: str, mode: str, frames: list[np.ndarray], force: bool = False,
    pipeline: object | None = None, repeats: int = 10,
) -> VariantResult:
    """Write ``<role>.<int8|fp16>`` beside the FP32 file, compare it with FP32, and record it in the manifest.

    ``frames`` are RGB images: calibration data for static INT8 and the parity / timing inputs for all
    modes. An INT8 variant slower than FP32 on this CPU is deleted and ``VariantRefused`` raised unless
    ``force``: the CPU would otherwise prefer it and lose both accuracy and time.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}")
    precision = MODES[mode]
    src = manifest.path(role)
    dst = src.with_name(f"{src.stem}.{precision}.onnx")
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    feeds = model_feeds(manifest, role, frames, batch=1, pipeline=pipeline)
    if not feeds:
        raise ValueError("no images to calibrate / compare with")
    try:
        if mode == "int8-static":
            quantize_int8_static(src, tmp, feeds)
        elif mode == "int8-dynamic":
            quantize_int8_dynamic(src, tmp)
        else:
            convert_fp16(src, tmp)
        report = parity(src, tmp, feeds)
        timing = feeds[: min(len(feeds), 8)]
        fp32_s, variant_s = time_session(src, timing, repeats), time_session(tmp, timing, repeats)
        if precision == "int8" and variant_s > fp32_s and not force:
            raise VariantRefused(
                f"INT8 takes {variant_s * 1e3:.1f} ms against FP32 {fp32_s * 1e3:.1f} ms on this CPU; "
                "not registered (use --force to register it anyway)"
            )
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    key = f"{role}.{precision}"
    manifest.files[key] = file_entry(manifest.directory, dst)
    manifest.provenance.setdefault("variants", {})[key] = {
        "mode": mode, "samples": len(feeds), "max_abs_diff": report.max_abs_diff,
        "argmax_agreement": report.argmax_agreement,
        "cpu_ms_fp32": round(fp32_s * 1e3, 3), "cpu_ms_variant": round(variant_s * 1e3, 3),
    }
    manifest.save()
    return VariantResult(role, dst, report, fp32_s, variant_s, registered=True)


def compare_variant(
    manifest: Manifest, role: str, precision: str, frames: list[np.ndarray], pipeline: object | None = None,
) -> ParityReport:
    """Parity of an already registered variant against the FP32 file on ``frames``."""
    key = f"{role}.{precision}"
    if key not in manifest.files:
        raise KeyError(f"{manifest.name}/{manifest.version} has no {key} variant")
    feeds = model_feeds(manifest, role, frames, batch=1, pipeline=pipeline)
    return parity(manifest.path(role), manifest.path(key), feeds)
