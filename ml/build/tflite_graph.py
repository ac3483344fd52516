"""Read a TensorFlow Lite flatbuffer into plain Python: tensors, constant data, operators and options.

Build time only, and without TensorFlow: the pure-Python ``tflite`` package (PyPI, generated from the
TFLite schema) parses the flatbuffer. Constants come out as NumPy arrays; sparse constants (TFLite's
``SparsityParameters``: per-dimension DENSE / SPARSE_CSR metadata, optional blocks) are densified here,
as the ``DENSIFY`` operator would do at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT32": np.int32, "INT64": np.int64,
           "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16}


def _enum_names(enum: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None = None  # constants only (densified when sparse)


@dataclass
class Operator:
    op: str  # BuiltinOperator name, e.g. "CONV_2D"
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]


def _index_vector(vector: Any, kind: int) -> np.ndarray:
    """A SparseIndexVector union (Int32Vector | Uint16Vector | Uint8Vector) as an int64 array."""
    import tflite

    cls = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}[kind]
    table = cls()
    table.Init(vector.Bytes, vector.Pos)
    return np.asarray(table.ValuesAsNumpy(), dtype=np.int64)


def densify(values: np.ndarray, shape: tuple[int, ...], sparsity: Any) -> np.ndarray:
    """The dense array a TFLite sparse tensor stands for (FormatConverter::SparseToDense, vectorised).

    The levels are walked in ``traversal_order``; a DENSE level enumerates ``dense_size`` positions, a
    SPARSE_CSR level the stored ``indices[segments[p]:segments[p+1]]`` of its parent position ``p``. Levels
    past the tensor's rank are block levels: ``block_map`` names the dimension each one subdivides.
    """
    order = [int(v) for v in sparsity.TraversalOrderAsNumpy()]
    block_map = [int(v) for v in sparsity.BlockMapAsNumpy()] if sparsity.BlockMapLength() else []
    rank = len(shape)
    positions = np.zeros(1, dtype=np.int64)  # the index into the level's storage, per path
    coords: list[np.ndarray] = []
    block_sizes: list[int] = []
    for level in range(sparsity.DimMetadataLength()):
        meta = sparsity.DimMetadata(level)
        if meta.Format() == 0:  # DENSE
            size = int(meta.DenseSize())
            if level >= rank:
                block_sizes.append(size)
            coords = [np.repeat(c, size) for c in coords]
            coords.append(np.tile(np.arange(size, dtype=np.int64), len(positions)))
            positions = (positions[:, None] * size + np.arange(size)).reshape(-1)
        else:  # SPARSE_CSR
            segments = _index_vector(meta.ArraySegments(), meta.ArraySegmentsType())
            indices = _index_vector(meta.ArrayIndices(), meta.ArrayIndicesType())
            counts = segments[positions + 1] - segments[positions]
            starts = np.repeat(segments[positions], counts)
            offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            coords = [np.repeat(c, counts) for c in coords]
            positions = starts + offsets
            coords.append(indices[positions])
            if level >= rank:
                raise ValueError("sparse block levels are not supported")
    if len(positions) != values.size:
        raise ValueError(f"sparsity metadata names {len(positions)} values, the buffer holds {values.size}")
    index = [np.zeros(len(positions), dtype=np.int64) for _ in range(rank)]
    for level in range(rank):
        index[order[level]] = coords[level]
    for k, dim in enumerate(block_map):
        index[dim] = index[dim] * block_sizes[k] + coords[rank + k]
    dense = np.zeros(shape, dtype=values.dtype)
    dense[tuple(index)] = values.reshape(-1)
    return dense


def _options(op_name: str, raw: Any) -> dict[str, Any]:
    """The builtin options this converter uses, as a dict (absent options → empty)."""
    import tflite

    if raw is None:
        return {}
    classes = {
        "CONV_2D": tflite.Conv2DOptions, "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
        "ADD": tflite.AddOptions, "MAX_POOL_2D": tflite.Pool2DOptions,
        "CONCATENATION": tflite.ConcatenationOptions, "RESIZE_BILINEAR": tflite.ResizeBilinearOptions,
        "DEPTH_TO_SPACE": tflite.DepthToSpaceOptions,
    }
    cls = classes.get(op_name)
    if cls is None:
        return {}
    table = cls()
    table.Init(raw.Bytes, raw.Pos)
    getters = ("Padding", "StrideW", "StrideH", "DilationWFactor", "DilationHFactor", "FusedActivationFunction",
               "DepthMultiplier", "FilterWidth", "FilterHeight", "Axis", "AlignCorners", "HalfPixelCenters",
               "BlockSize")
    return {name: getattr(table, name)() for name in getters if hasattr(table, name)}


def read_tflite(path: Path) -> Graph:
    """The first subgraph of a .tflite file."""
    try:
        import tflite
    except ImportError as exc:
        from ml.manifest import ModelError

        raise ModelError("missing_package", "pip install tflite==2.18.0 (the .tflite parser, a build extra)") from exc

    buf = path.read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() != 1:
        raise ValueError(f"{path}: expected one subgraph, found {model.SubgraphsLength()}")
    graph = model.Subgraphs(0)
    type_names = _enum_names(tflite.TensorType)
    op_names = _enum_names(tflite.BuiltinOperator)
    tensors = []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        dtype = type_names[t.Type()]
        shape = tuple(int(v) for v in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        data = None
        buffer = model.Buffers(t.Buffer())
        if buffer is not None and buffer.DataLength():
            raw = buffer.DataAsNumpy().tobytes()
            values = np.frombuffer(raw, dtype=_DTYPES[dtype])
            data = densify(values, shape, t.Sparsity()) if t.Sparsity() is not None else values.reshape(shape)
        tensors.append(Tensor(t.Name().decode(), shape, dtype, data))
    operators = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = op_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        operators.append(Operator(name, [int(v) for v in op.InputsAsNumpy()], [int(v) for v in op.OutputsAsNumpy()],
                                  _options(name, op.BuiltinOptions())))
    return Graph(tensors, operators, [int(v) for v in graph.InputsAsNumpy()], [int(v) for v in graph.OutputsAsNumpy()])
