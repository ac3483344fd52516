"""INT8 and FP16 variants of an FP32 ONNX model.

The variants sit beside the FP32 file in a model version folder (roles ``<role>.int8`` /
``<role>.fp16``); ``Pipeline.session`` picks INT8 on CPU and FP16 on CUDA. Nothing here decides
whether a variant is good enough: ``ml.build.optimize.parity`` measures that, the caller decides.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

log = logging.getLogger(__name__)


class _FeedReader(CalibrationDataReader):
    """Hands ORT's calibrator one feed dict at a time (it pulls until ``None``)."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _preprocess(src: Path, work: Path) -> Path:
    """ORT's recommended pre-step (shape inference + graph fusion) before quantising.

    It makes per-tensor ranges land on fused ops (Conv+BN, etc.) and so improves both accuracy and
    speed; it can fail on exotic graphs, in which case quantising the original file still works.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = work / "preprocessed.onnx"
    try:
        quant_pre_process(str(src), str(out), skip_symbolic_shape=False)
    except Exception as exc:  # any failure here only loses an optimisation
        log.warning("quant_pre_process failed on %s (%s); quantising the original graph", src, exc)
        return src
    return out


def quantize_int8_static(
    src: Path, dst: Path, calibration: Iterable[dict[str, np.ndarray]], per_channel: bool = True,
    exclude_nodes: Sequence[str] = (), preprocess: bool = True,
) -> Path:
    """Static INT8 (QDQ format): activation ranges calibrated on ``calibration`` feeds (MinMax).

    Use for CNNs, where QDQ + per-channel weights keeps accuracy and runs on ORT's int8 kernels.
    Calibrate on a few dozen inputs preprocessed exactly as the pipeline does. ``exclude_nodes`` stay
    FP32 (e.g. a stem whose fine detail matters); name them as in ``src`` and pass ``preprocess=False``,
    because the pre-step fuses and renames nodes.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepared = _preprocess(src, work) if preprocess else src
        quantize_static(
            str(prepared), str(work / "int8.onnx"), _FeedReader(calibration),
            quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=list(exclude_nodes),
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        shutil.move(str(work / "int8.onnx"), dst)
    return dst


def quantize_int8_dynamic(src: Path, dst: Path) -> Path:
    """Dynamic INT8: weights quantised offline, activations per call. Suits transformers / MatMul-heavy text
    models, where activation ranges vary too much per input for one static calibration.

    Caution: the activation scale is computed per tensor, i.e. over the whole batch, so a row's output
    depends on the other rows in the call. A pipeline whose verdicts must not depend on micro-batching
    runs such a model one item at a time (or uses static INT8).
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepared = _preprocess(src, work)
        quantize_dynamic(str(prepared), str(work / "int8.onnx"), weight_type=QuantType.QInt8)
        shutil.move(str(work / "int8.onnx"), dst)
    return dst


def convert_fp16(src: Path, dst: Path, keep_io_types: bool = True) -> Path:
    """FP16 weights and compute for CUDA; inputs and outputs stay float32 so callers need no change.

    Ops that lose too much in half precision (resize, range, topk …) are kept in float32 by the
    converter's default block list.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    half = convert_float_to_float16(model, keep_io_types=keep_io_types, disable_shape_infer=False)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(half, str(dst))
    return dst
