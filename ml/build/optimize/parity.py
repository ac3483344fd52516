"""How far a variant (INT8 / FP16 / re-export) strays from its reference, and how fast each runs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ml.runtime import CPU, make_session


@dataclass
class ParityReport:
    """Differences on the first output over ``n`` feeds. ``argmax_agreement`` is the share of rows whose
    top class is the same (for a one-column output: the same side of 0.5)."""

    max_abs_diff: float
    mean_abs_diff: float
    argmax_agreement: float
    n: int

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


def _decisions(out: np.ndarray) -> np.ndarray:
    rows = out.reshape(out.shape[0], -1) if out.ndim > 1 else out.reshape(-1, 1)
    if rows.shape[1] == 1:
        return (rows[:, 0] >= 0.5).astype(np.int64)
    return rows.argmax(axis=1)


def _session(path: Path, providers: Sequence[str] | None, threads: int = 0) -> ort.InferenceSession:
    return make_session(path, list(providers or [CPU]), intra_op_threads=threads)


def parity(
    reference: Path, candidate: Path, feeds: list[dict[str, np.ndarray]],
    providers: Sequence[str] | None = None,
) -> ParityReport:
    """Run both models on every feed and compare their first outputs element-wise."""
    if not feeds:
        raise ValueError("parity needs at least one feed")
    ref, cand = _session(reference, providers), _session(candidate, providers)
    diffs: list[np.ndarray] = []
    agree = rows = 0
    for feed in feeds:
        a = np.asarray(ref.run(None, feed)[0], dtype=np.float64)
        b = np.asarray(cand.run(None, feed)[0], dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(f"output shapes differ: {a.shape} vs {b.shape}")
        diffs.append(np.abs(a - b).ravel())
        da, db = _decisions(a), _decisions(b)
        agree += int((da == db).sum())
        rows += len(da)
    flat = np.concatenate(diffs)
    return ParityReport(
        max_abs_diff=float(flat.max()), mean_abs_diff=float(flat.mean()),
        argmax_agreement=agree / rows, n=rows,
    )


def time_session(
    path: Path, feeds: list[dict[str, np.ndarray]], repeats: int = 10, providers: Sequence[str] | None = None,
    threads: int = 0,
) -> float:
    """Median seconds per ``run`` over ``repeats`` passes of the feeds, after one warm-up pass.

    ``threads=0`` lets ORT use every core, as a benchmark on an idle machine should.
    """
    if not feeds:
        raise ValueError("timing needs at least one feed")
    session = _session(path, providers, threads)
    for feed in feeds:
        session.run(None, feed)
    samples: list[float] = []
    for _ in range(max(1, repeats)):
        for feed in feeds:
            start = time.perf_counter()
            session.run(None, feed)
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)
