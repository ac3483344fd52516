"""ONNX Runtime sessions: provider choice and per-process threading.

Sessions are created after fork (in the worker's process-init hook), never in a parent process,
and with few intra-op threads so several worker processes do not oversubscribe the cores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def choose_providers(setting: str = "auto") -> list[str]:
    """``auto``: CUDA when this onnxruntime build has it, then CPU. Otherwise the listed ones that exist."""
    available = ort.get_available_providers()
    if setting.strip().lower() in ("", "auto"):
        wanted = [CUDA, CPU]
    else:
        wanted = [p.strip() for p in setting.split(",") if p.strip()]
    chosen = [p for p in wanted if p in available]
    return chosen or [CPU]


def precision_for(providers: Sequence[str]) -> list[str]:
    """Variant preference: FP16 on CUDA, INT8 on CPU, FP32 always as the fallback."""
    if providers and providers[0] == CUDA:
        return ["fp16", "fp32"]
    return ["int8", "fp32"]


def make_session(path: Path, providers: Sequence[str], intra_op_threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if intra_op_threads > 0:
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=list(providers))
