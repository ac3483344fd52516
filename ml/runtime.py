"""ONNX Runtime sessions: provider choice, per-process threading, and what a session really got.

Sessions are created after fork (in the worker process), never in a parent process, with few
intra-op threads so worker processes do not oversubscribe the cores (ONNX_INTRA_OP_THREADS x
inference processes ≤ cores by default). ONNX Runtime silently falls back to the CPU when the CUDA
provider cannot load (a CUDA / cuDNN mismatch), so callers must trust ``session.get_providers()``, not
the list they asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

# CUDA EP options, chosen on purpose:
# - arena kSameAsRequested: batches vary in size; doubling the arena per new peak wastes GPU memory.
# - cudnn_conv_algo_search HEURISTIC: EXHAUSTIVE re-benchmarks for every new input shape, and batch
#   sizes vary; the heuristic choice is within a few % on the fixed-shape detector and classifiers.
# - do_copy_in_default_stream: host→device copies ordered with the compute, no extra sync.
# - fixed batch shapes (``padded_rows``): a session on CUDA gets its batches padded to a power of two, so
#   a worker meets a handful of input shapes, not one per batch size: each new shape costs the CUDA EP
#   and cuDNN a re-plan (measured on an H200: the classifier's share fell from 2.9 to 0.6 ms/image at
#   batches of 32-256; docs/benchmarks.md).
# IO binding is not used: inputs arrive as host NumPy arrays once per batch and outputs are tiny
# (one score per crop), so binding would save one small copy per call.
CUDA_OPTIONS = {
    "arena_extend_strategy": "kSameAsRequested",
    "cudnn_conv_algo_search": "HEURISTIC",
    "do_copy_in_default_stream": "1",
}


class ProviderError(RuntimeError):
    """The providers asked for cannot be had (CUDA alone, on a machine or build without it)."""


def choose_providers(setting: str = "auto") -> list[str]:
    """``auto``: CUDA when this onnxruntime build has it, then CPU. Otherwise the listed ones that exist.

    Naming CUDA alone is a promise that the worker runs on the GPU: without CUDA that is refused
    (ProviderError) rather than quietly running on the CPU. Naming CUDA with a fallback logs loudly.
    """
    available = ort.get_available_providers()
    if setting.strip().lower() in ("", "auto"):
        return [p for p in (CUDA, CPU) if p in available] or [CPU]
    wanted = [p.strip() for p in setting.split(",") if p.strip()]
    chosen = [p for p in wanted if p in available]
    if wanted == [CUDA] and not chosen:
        raise ProviderError(
            f"ONNX_PROVIDERS={setting} but this onnxruntime has no CUDA provider (available: {available}); "
            "install onnxruntime-gpu matching the image's CUDA, or add CPUExecutionProvider to allow the CPU")
    if CUDA in wanted and CUDA not in chosen:
        log.warning("ONNX_PROVIDERS asks for CUDA but this onnxruntime has none (available: %s): "
                    "running on the CPU", available)
    return chosen or [CPU]


def precision_for(providers: Sequence[str]) -> list[str]:
    """Variant preference: FP16 on CUDA, INT8 on CPU, FP32 always as the fallback."""
    if providers and providers[0] == CUDA:
        return ["fp16", "fp32"]
    return ["int8", "fp32"]


def on_cuda(session: ort.InferenceSession) -> bool:
    """Whether ``session`` really runs on the CUDA provider (ONNX Runtime may have fallen back)."""
    return session.get_providers()[0] == CUDA


def intra_op_threads(session: ort.InferenceSession) -> int:
    """The session's intra-op thread count as set (0: ONNX Runtime's default, every core)."""
    return int(session.get_session_options().intra_op_num_threads)


def padded_rows(rows: int, limit: int) -> int:
    """The batch size ``rows`` is padded to on CUDA: the next power of two, at most ``limit`` (the
    caller's chunk size). On the CPU padding only adds work, so callers pad on CUDA alone."""
    return min(max(1, limit), 1 << max(0, rows - 1).bit_length())


def pad_batch(batch: np.ndarray, rows: int) -> np.ndarray:
    """``batch`` with zero rows appended up to ``rows`` (itself when it already has them)."""
    if len(batch) >= rows:
        return batch
    out = np.zeros((rows, *batch.shape[1:]), dtype=batch.dtype)
    out[: len(batch)] = batch
    return out


class RowRunner:
    """A session whose first input takes a batch of rows: runs any number of rows in calls of at most
    ``max_rows`` (to bound memory; one row a call on a one-thread CPU session), and on CUDA pads each
    call to a power of two (``padded_rows``) so the provider meets a handful of input shapes. Rows are
    independent, so a row's output does not depend on its call mates or the padding. ``pad`` is decided
    once from the providers the session really got."""

    def __init__(self, session: ort.InferenceSession, max_rows: int = 64) -> None:
        self.session = session
        self.max_rows = max(1, max_rows)
        self.pad = on_cuda(session)
        # On the CPU EP with one intra-op thread (the workers' default), one row per call: rows buy no
        # parallelism there, and a call's activations for many rows spill out of the cache (deepfake/2's
        # MesoNet: 3.5 CPU ms per crop alone, 4.4 in calls of 8; docs/benchmarks.md). With more threads,
        # or on CUDA, the rows go together.
        self.call_rows = 1 if not self.pad and intra_op_threads(session) == 1 else self.max_rows
        self.feed = session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray, output: str | None = None,
                 prepare: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """The session's first output (or ``output``) for ``batch``, row for row; ``prepare`` turns a
        call's rows into the model's input (per call, so a large batch is never converted at once)."""
        names = [output] if output else None
        parts = []
        for start in range(0, len(batch), self.call_rows):
            chunk = batch[start: start + self.call_rows]
            rows = len(chunk)
            if self.pad:
                chunk = pad_batch(chunk, padded_rows(rows, self.max_rows))
            result = self.session.run(names, {self.feed: prepare(chunk) if prepare else chunk})[0]
            parts.append(np.asarray(result)[:rows])
        if not parts:
            raise ValueError("RowRunner needs at least one row")
        return np.concatenate(parts)


def make_session(path: Path, providers: Sequence[str], intra_op_threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if intra_op_threads > 0:
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    provider_list: list[str | tuple[str, dict[str, str]]] = [
        (p, CUDA_OPTIONS) if p == CUDA else p for p in providers
    ]
    return ort.InferenceSession(str(path), options, providers=provider_list)
