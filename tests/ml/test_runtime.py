"""ml.runtime's batch padding for the CUDA EP: a handful of shapes, never more rows than the chunk, and
RowRunner, which every batched classifier call goes through."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from ml.runtime import CPU, RowRunner, pad_batch, padded_rows
from tests.support.claims_cuda import ClaimsCuda


def test_padded_rows_are_powers_of_two_within_the_chunk() -> None:
    assert [padded_rows(n, 64) for n in (1, 2, 3, 5, 8, 9, 33, 64)] == [1, 2, 4, 8, 8, 16, 64, 64]
    assert padded_rows(40, 48) == 48  # a chunk size that is not a power of two caps the bucket
    assert {padded_rows(n, 64) for n in range(1, 65)} == {1, 2, 4, 8, 16, 32, 64}


def test_pad_batch_appends_zero_rows_and_keeps_the_data() -> None:
    batch = np.arange(2 * 3, dtype=np.uint8).reshape(2, 3) + 1
    padded = pad_batch(batch, 4)
    assert padded.shape == (4, 3) and padded.dtype == np.uint8
    assert (padded[:2] == batch).all() and not padded[2:].any()
    assert pad_batch(batch, 2) is batch


def _doubler(options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    """A real one-node graph with a free batch dimension: y = 2x, z = x + 1 for (N, 3) float rows."""
    rows = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"]), helper.make_node("Add", ["x", "one"], ["z"])], "doubler",
        [rows], [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3]) for n in ("y", "z")],
        initializer=[helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return ort.InferenceSession(model.SerializeToString(), options, providers=[CPU])


def test_row_runner_on_the_cpu_runs_exact_chunks_row_for_row() -> None:
    calls: list[int] = []
    session = _doubler()
    runner = RowRunner(session, max_rows=32)
    assert not runner.pad  # a CPU session is never padded: padding only adds work there
    runner.session = ClaimsCudaLog(session, calls)
    batch = np.arange(70 * 3, dtype=np.float32).reshape(70, 3)
    assert np.array_equal(runner(batch), 2 * batch) and calls == [32, 32, 6]
    assert np.array_equal(runner(batch[:5], output="z"), batch[:5] + 1)
    halves = runner(batch.astype(np.int64), prepare=lambda chunk: chunk.astype(np.float32) / 2)
    assert np.array_equal(halves, batch)  # prepare is applied to each call's rows


def test_row_runner_on_a_one_thread_cpu_session_runs_one_row_a_call() -> None:
    """One intra-op thread (the workers' default): rows buy no parallelism, so each runs alone, with
    the same answers as the batched calls of a session with ONNX Runtime's default threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    single = _doubler(options)
    calls: list[int] = []
    runner = RowRunner(single, max_rows=32)
    assert not runner.pad and runner.call_rows == 1
    assert RowRunner(_doubler(), max_rows=32).call_rows == 32
    runner.session = ClaimsCudaLog(single, calls)
    batch = np.random.default_rng(1).random((5, 3), dtype=np.float32)
    assert np.array_equal(runner(batch), RowRunner(_doubler(), max_rows=32)(batch))
    assert calls == [1] * 5


def test_row_runner_on_cuda_pads_each_call_to_a_power_of_two() -> None:
    """No GPU here: the session is a real CPU one that reports CUDA (tests.support.claims_cuda)."""
    calls: list[int] = []
    runner = RowRunner(ClaimsCuda(_doubler(), calls), max_rows=32)  # type: ignore[arg-type]
    assert runner.pad
    batch = np.random.default_rng(0).random((70, 3), dtype=np.float32)
    out = runner(batch)
    assert calls == [32, 32, 8] and out.shape == (70, 3)  # 6 rows ran as 8; the 2 blank rows are dropped
    assert np.array_equal(out, 2 * batch)
    with pytest.raises(ValueError):
        runner(batch[:0])


class ClaimsCudaLog(ClaimsCuda):
    """ClaimsCuda's call log on a session that still says CPU."""

    def get_providers(self) -> list[str]:
        return [CPU]
