"""BlazeFace (mediapipe 0.10.21's face detectors) from .tflite to ONNX, without TensorFlow.

The .tflite files ship inside the ``mediapipe==0.10.21`` wheel (Apache-2.0), installed ``--no-deps``
(mediapipe pins numpy<2) and never imported: they are found through the wheel's file list. The graph is
read with the pure-Python ``tflite`` parser (ml.build.tflite_graph) and written op by op as ONNX:

- input ``image``: uint8 (N, S, S, 3) RGB, the letterboxed frames as they are; the graph casts,
  transposes to NCHW and scales to [-1, 1] itself (less to copy to a GPU, no float work on the host);
- TFLite's NHWC activations become NCHW (convolution weights transposed, SAME padding made explicit,
  since TF pads the odd pixel at the end), fp16 constants (DEQUANTIZE, DENSIFY) folded to fp32;
- a dynamic batch axis: every RESHAPE keeps the batch as -1, RESIZE uses scales, not sizes;
- outputs decoded in the graph with mediapipe's SSD anchors: ``scores`` (N, A) = sigmoid of the clipped
  logit, ``boxes`` (N, A, 16) = centre x, y, width, height and six keypoints (x, y), as fractions of S.

``python -m ml.build.blazeface_export --reference-python PY`` also runs the original .tflite with LiteRT
(``ai-edge-litert`` in a throwaway venv at PY) and prints the largest difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ml.build.tflite_graph import Graph, read_tflite
from ml.manifest import ModelError

PACKAGE = "mediapipe"
PACKAGE_VERSION = "0.10.21"
OPSET = 17


@dataclass(frozen=True)
class Variant:
    """One mediapipe face model with its anchor and decoding options (face_detection_*.pbtxt)."""

    name: str
    file: str
    size: int  # square input side
    strides: tuple[int, ...]  # SSD layers; consecutive equal strides share one feature map
    interpolated: bool  # an extra anchor per layer (interpolated_scale_aspect_ratio = 1.0)
    score_threshold: float  # mediapipe's min_score_thresh


VARIANTS = {
    "short_range": Variant("short_range", "face_detection_short_range.tflite", 128, (8, 16, 16, 16), True, 0.5),
    "full_range": Variant("full_range", "face_detection_full_range_sparse.tflite", 192, (4,), False, 0.6),
}


def _wheel_file(suffix: str) -> Path:
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelError("missing_package",
                         f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION} (BlazeFace .tflite files)") from exc
    if dist.version != PACKAGE_VERSION:
        raise ModelError("missing_package", f"{PACKAGE} {dist.version} found; BlazeFace needs {PACKAGE_VERSION}")
    for item in dist.files or []:
        if str(item).endswith(suffix):
            return Path(str(dist.locate_file(item)))
    raise ModelError("missing_package", f"{PACKAGE} {dist.version} has no file ending in {suffix}")


def tflite_path(variant: str) -> Path:
    """The .tflite file inside the installed mediapipe wheel (found without importing mediapipe)."""
    return _wheel_file(f"modules/face_detection/{VARIANTS[variant].file}")


def licence_path() -> Path:
    return _wheel_file(".dist-info/LICENSE")


def ssd_anchors(variant: Variant) -> np.ndarray:
    """(A, 2) anchor centres as fractions of the input, in mediapipe's order (layer, y, x, anchor)."""
    centres = []
    layer = 0
    while layer < len(variant.strides):
        stride, per_cell = variant.strides[layer], 0
        while layer < len(variant.strides) and variant.strides[layer] == stride:
            per_cell += 2 if variant.interpolated else 1  # aspect ratio 1.0 (+ the interpolated one)
            layer += 1
        cells = int(np.ceil(variant.size / stride))
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, variant: Variant) -> tuple[np.ndarray, np.ndarray]:
    """mediapipe's TensorsToDetections decoding in NumPy (the graph does the same): (scores, boxes)."""
    logits = np.clip(raw_scores[..., 0].astype(np.float64), -100, 100)
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32), raw_boxes / variant.size + _offsets(variant)


def _offsets(variant: Variant) -> np.ndarray:
    """(A, 16): the anchor centre added to centre x, y and every keypoint; nothing to width and height."""
    anchors = ssd_anchors(variant)
    offsets = np.tile(anchors, (1, 8))
    offsets[:, 2:4] = 0.0
    return offsets.astype(np.float32)


def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class _Emitter:
    """Walks the TFLite operators in order and writes ONNX nodes; 4-D activations are kept NCHW."""

    def __init__(self, graph: Graph, factor: int = 1) -> None:
        self.graph = graph
        self.factor = factor  # the input side over the .tflite's: every feature map grows by it
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.names: dict[int, str] = {}
        self.consts: dict[int, np.ndarray] = {
            i: t.data for i, t in enumerate(graph.tensors) if t.data is not None
        }

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"{op}_{len(self.nodes)}", **attrs))
        return output

    def act(self, name: str, fused: int) -> str:
        if fused == 0:
            return name
        if fused != 1:
            raise ValueError(f"unsupported fused activation {fused}")
        return self.node("Relu", [name], name + "_relu")

    def shape(self, index: int) -> tuple[int, ...]:
        """A tensor's shape at this input size (4-D activations are NHWC in TFLite)."""
        shape = self.graph.tensors[index].shape
        if len(shape) == 4:
            return (shape[0], shape[1] * self.factor, shape[2] * self.factor, shape[3])
        if len(shape) == 3:
            return (shape[0], shape[1] * self.factor ** 2, shape[2])
        return shape

    def emit(self, op_index: int) -> None:
        op = self.graph.operators[op_index]
        out = op.outputs[0]
        name = f"t{out}"
        if op.op in ("DEQUANTIZE", "DENSIFY"):
            if op.inputs[0] not in self.consts:
                raise ValueError(f"{op.op} of a non-constant tensor")
            self.consts[out] = self.consts[op.inputs[0]].astype(np.float32)
            return
        x = self.names[op.inputs[0]]
        o = op.options
        if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            weight = self.consts[op.inputs[1]]  # (O, KH, KW, I) or (1, KH, KW, C·M)
            shape = self.shape(op.inputs[0])
            channels = shape[3]
            if op.op == "CONV_2D":
                w, group = weight.transpose(0, 3, 1, 2), 1
            else:
                w, group = weight.transpose(3, 0, 1, 2), channels
            kh, kw = w.shape[2], w.shape[3]
            pads = [0, 0, 0, 0]
            if o["Padding"] == 0:  # SAME
                (t, b), (left, r) = (_same_pads(shape[1], kh, o["StrideH"], o["DilationHFactor"]),
                                     _same_pads(shape[2], kw, o["StrideW"], o["DilationWFactor"]))
                pads = [t, left, b, r]
            inputs = [x, self.const(f"{name}_w", w)]
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                inputs.append(self.const(f"{name}_b", self.consts[op.inputs[2]]))
            y = self.node("Conv", inputs, name + "_conv", group=group, kernel_shape=[kh, kw], pads=pads,
                          strides=[o["StrideH"], o["StrideW"]], dilations=[o["DilationHFactor"], o["DilationWFactor"]])
            self.names[out] = self.act(y, o["FusedActivationFunction"])
        elif op.op == "ADD":
            y = self.node("Add", [x, self._operand(op.inputs[1], name)], name + "_add")
            self.names[out] = self.act(y, o.get("FusedActivationFunction", 0))
        elif op.op == "RELU":
            self.names[out] = self.node("Relu", [x], name)
        elif op.op == "MAX_POOL_2D":
            shape = self.shape(op.inputs[0])
            kh, kw = o["FilterHeight"], o["FilterWidth"]
            pads = [0, 0, 0, 0]
            if o["Padding"] == 0:
                (t, b), (left, r) = _same_pads(shape[1], kh, o["StrideH"]), _same_pads(shape[2], kw, o["StrideW"])
                pads = [t, left, b, r]
            y = self.node("MaxPool", [x], name + "_pool", kernel_shape=[kh, kw], pads=pads,
                          strides=[o["StrideH"], o["StrideW"]])
            self.names[out] = self.act(y, o["FusedActivationFunction"])
        elif op.op == "PAD":
            p = self.consts[op.inputs[1]].reshape(-1, 2)  # NHWC (before, after)
            nchw = p[[0, 3, 1, 2]]
            widths = np.concatenate([nchw[:, 0], nchw[:, 1]]).astype(np.int64)
            self.names[out] = self.node("Pad", [x, self.const(f"{name}_pads", widths)], name)
        elif op.op == "RESHAPE":
            target = list(self.shape(out))
            src = x
            if len(self.shape(op.inputs[0])) == 4:  # back to NHWC so the element order is TFLite's
                src = self.node("Transpose", [x], name + "_nhwc", perm=[0, 2, 3, 1])
            if len(target) == 4:
                raise ValueError("RESHAPE to 4-D is not supported")
            new_shape = np.array([-1, *target[1:]], dtype=np.int64)
            self.names[out] = self.node("Reshape", [src, self.const(f"{name}_shape", new_shape)], name)
        elif op.op == "CONCATENATION":
            rank = len(self.shape(out))
            axis = o["Axis"] % rank
            if rank == 4:
                axis = [0, 2, 3, 1][axis]
            parts = [self._operand(i, name) for i in op.inputs]
            y = self.node("Concat", parts, name + "_cat", axis=axis)
            self.names[out] = self.act(y, o.get("FusedActivationFunction", 0))
        elif op.op == "RESIZE_BILINEAR":
            if o["AlignCorners"] or not o["HalfPixelCenters"]:
                raise ValueError("only half-pixel-centre bilinear resizing is supported")
            before, after = self.shape(op.inputs[0]), self.shape(out)
            scales = np.array([1.0, 1.0, after[1] / before[1], after[2] / before[2]], dtype=np.float32)
            self.names[out] = self.node("Resize", [x, "", self.const(f"{name}_scales", scales)], name,
                                        mode="linear", coordinate_transformation_mode="half_pixel")
        elif op.op == "DEPTH_TO_SPACE":
            # TF's NHWC depth_to_space is ONNX's DCR mode on NCHW.
            self.names[out] = self.node("DepthToSpace", [x], name, blocksize=o["BlockSize"], mode="DCR")
        else:
            raise ValueError(f"TFLite operator {op.op} is not supported")

    def _operand(self, index: int, name: str) -> str:
        if index in self.names:
            return self.names[index]
        value = self.consts[index]
        if value.ndim == 4:
            value = value.transpose(0, 3, 1, 2)
        return self.const(f"{name}_c{index}", value.astype(np.float32))


def to_onnx(tflite: Path, variant: Variant, raw_outputs: bool = False, size: int | None = None) -> onnx.ModelProto:
    """The ONNX model; ``raw_outputs`` also exposes TFLite's own outputs (for parity checks only).

    ``size``: an input side that is a multiple of the .tflite's (the nets are fully convolutional; SSD
    anchors follow the larger feature maps and the regressors stay in input pixels, so a 256 px input
    finds faces half as large, relative to the frame, as the native 128 px one).
    """
    graph = read_tflite(tflite)
    if len(graph.inputs) != 1 or graph.tensors[graph.inputs[0]].shape != (1, variant.size, variant.size, 3):
        raise ValueError(f"{tflite}: unexpected input {[graph.tensors[i].shape for i in graph.inputs]}")
    size = size or variant.size
    if size % variant.size:
        raise ValueError(f"input side {size} is not a multiple of {variant.size}")
    emitter = _Emitter(graph, size // variant.size)
    variant = dataclasses.replace(variant, size=size)
    x = emitter.node("Cast", ["image"], "image_f", to=TensorProto.FLOAT)
    x = emitter.node("Transpose", [x], "image_nchw", perm=[0, 3, 1, 2])
    x = emitter.node("Mul", [x, emitter.const("scale", np.array(1 / 127.5, dtype=np.float32))], "image_scaled")
    emitter.names[graph.inputs[0]] = emitter.node("Sub", [x, emitter.const("one", np.array(1, np.float32))], "input")
    for i in range(len(graph.operators)):
        emitter.emit(i)
    by_width = {graph.tensors[i].shape[-1]: emitter.names[i] for i in graph.outputs}
    raw_boxes, raw_scores = by_width[16], by_width[1]
    boxes = emitter.node("Mul", [raw_boxes, emitter.const("inv_size", np.array(1 / variant.size, np.float32))],
                         "boxes_scaled")
    emitter.node("Add", [boxes, emitter.const("anchor_offsets", _offsets(variant))], "boxes")
    logits = emitter.node("Squeeze", [raw_scores, emitter.const("squeeze_axes", np.array([2], np.int64))], "logits")
    clipped = emitter.node("Clip", [logits, emitter.const("lo", np.array(-100, np.float32)),
                                    emitter.const("hi", np.array(100, np.float32))], "logits_clipped")
    emitter.node("Sigmoid", [clipped], "scores")
    anchors = len(ssd_anchors(variant))
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", anchors]),
               helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", anchors, 16])]
    if raw_outputs:
        outputs += [helper.make_tensor_value_info(raw_boxes, TensorProto.FLOAT, ["N", anchors, 16]),
                    helper.make_tensor_value_info(raw_scores, TensorProto.FLOAT, ["N", anchors, 1])]
    model = helper.make_model(
        helper.make_graph(
            emitter.nodes, f"blazeface_{variant.name}",
            [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", variant.size, variant.size, 3])],
            outputs, emitter.initializers),
        opset_imports=[helper.make_opsetid("", OPSET)], producer_name="deepscreen.blazeface_export",
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def export(variant: str, dst: Path, size: int | None = None) -> Path:
    """Write ``dst`` (FP32 ONNX) from the mediapipe wheel's .tflite for ``variant`` (input side ``size``)."""
    model = to_onnx(tflite_path(variant), VARIANTS[variant], size=size)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst


def parity_images(size: int) -> np.ndarray:
    """uint8 (N, size, size, 3): the two portraits and four LFW faces letterboxed, and one noise image."""
    from ml.build.face_eval import astronaut, hopper, lfw_faces

    pictures = [astronaut(), hopper(), *lfw_faces(100)[:4]]
    batch = np.zeros((len(pictures) + 1, size, size, 3), dtype=np.uint8)
    for k, picture in enumerate(pictures):
        scale = size / max(picture.shape[:2])
        w, h = round(picture.shape[1] * scale), round(picture.shape[0] * scale)
        top, left = (size - h) // 2, (size - w) // 2
        batch[k, top: top + h, left: left + w] = cv2.resize(picture, (w, h), interpolation=cv2.INTER_AREA)
    batch[-1] = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return batch


_LITERT = """
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1]); it.allocate_tensors()
x = np.load(sys.argv[2]); outs = []
inp = it.get_input_details()[0]
for image in x:
    it.set_tensor(inp["index"], image[None]); it.invoke()
    outs.append([it.get_tensor(o["index"])[0] for o in it.get_output_details()])
by = {o.shape[-1]: np.stack([r[k] for r in outs]) for k, o in enumerate(outs[0])}
np.save(sys.argv[3], by[16]); np.save(sys.argv[4], by[1])
"""


def litert_parity(variant: str, images: np.ndarray, python: str) -> dict[str, float]:
    """Max |Δ| between this ONNX graph (ORT, CPU) and the original .tflite run by LiteRT in ``python``.

    ``images``: uint8 (N, S, S, 3). Raw regressors are compared in input pixels, scores after the sigmoid.
    """
    import onnxruntime as ort

    spec = VARIANTS[variant]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        np.save(work / "x.npy", (images.astype(np.float32) / 127.5 - 1.0).astype(np.float32))
        subprocess.run([python, "-c", _LITERT, str(tflite_path(variant)), str(work / "x.npy"),
                        str(work / "b.npy"), str(work / "s.npy")], check=True, capture_output=True)
        ref_boxes, ref_logits = np.load(work / "b.npy"), np.load(work / "s.npy")
    model = to_onnx(tflite_path(variant), spec, raw_outputs=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    scores, boxes, raw_boxes, raw_logits = session.run(None, {"image": images})
    ref_scores, ref_decoded = decode(ref_boxes, ref_logits, spec)
    confident = ref_scores > 0.5
    return {
        "raw_regressor_max_abs_diff_px": float(np.abs(raw_boxes - ref_boxes).max()),
        "raw_logit_max_abs_diff": float(np.abs(raw_logits - ref_logits).max()),
        "score_max_abs_diff": float(np.abs(scores - ref_scores).max()),
        "decoded_box_max_abs_diff_px_at_confident_anchors":
            float(np.abs(boxes - ref_decoded)[confident].max() * spec.size) if confident.any() else 0.0,
        "n_images": len(images), "n_confident_anchors": int(confident.sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("blazeface"))
    parser.add_argument("--reference-python", help="a python with ai-edge-litert, for a LiteRT parity check")
    args = parser.parse_args()
    for name, spec in VARIANTS.items():
        path = export(name, args.out / f"blazeface_{name}.onnx")
        print(f"{name}: {path} ({path.stat().st_size} bytes)")
        if args.reference_python:
            report = litert_parity(name, parity_images(spec.size), args.reference_python)
            print(json.dumps({"variant": name, **report}))


if __name__ == "__main__":
    main()
