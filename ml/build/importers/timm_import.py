"""Import a user's deepfake classifier checkpoint (timm architecture) as a ``deepfake`` model version.

Public detectors users bring: the DFDC winner (EfficientNet-B7 "tf" variant, 380 px, ImageNet
normalisation), DeepfakeBench (EfficientNet-B4 / Xception, 256 px). The checkpoint is loaded strictly
into timm's definition of the architecture, exported to ONNX with a dynamic batch, checked against
torch, and written beside face-detector files copied from the newest ``deepfake`` version (the pipeline
needs both). Torch and timm are build-time only; the written version runs on ONNX Runtime.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml.manifest import MANIFEST, Manifest, ModelError, file_entry, sha256_file
from ml.repository import ModelRepository

TEMPLATE_MODEL = "deepfake"
LABELS = ["real", "fake"]
PARITY_LIMIT = 1e-3
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
HALF = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])


@dataclass(frozen=True)
class Arch:
    timm_name: str
    input_size: int
    mean: list[float]
    std: list[float]
    origin: str


# The "tf_" EfficientNets use TensorFlow "same" padding, as the DFDC winner's tf_efficientnet_b7_ns and
# DeepfakeBench's efficientnet-pytorch B4 do; the weights would load into the plain ones too but compute
# something else.
ARCHITECTURES: dict[str, Arch] = {
    "efficientnet_b7": Arch("tf_efficientnet_b7", 380, *IMAGENET, "DFDC winner (selimsef), 380 px"),
    "efficientnet_b4": Arch("tf_efficientnet_b4", 256, *HALF, "DeepfakeBench EfficientNet-B4, 256 px"),
    "xception": Arch("legacy_xception", 256, *HALF, "DeepfakeBench / FaceForensics++ Xception, 256 px"),
}

_WRAPPERS = ("module.", "model.", "encoder.", "backbone.", "net.", "_orig_mod.")
_HEADS = ("fc.", "last_linear.", "_fc.", "classifier.", "head.fc.", "head.")


class CheckpointError(ValueError):
    """The checkpoint cannot be read or does not fit the architecture."""


@dataclass
class ImportResult:
    manifest: Manifest
    max_abs_diff: float
    checkpoint_sha256: str
    mapping: str  # "names" or "position": how checkpoint tensors were matched to the architecture


def read_state_dict(path: Path, trust: bool = False) -> dict[str, Any]:
    """A checkpoint's tensors, unwrapped from ``state_dict`` / ``model`` nesting and ``module.`` prefixes.

    ``torch.load`` runs with ``weights_only=True`` unless ``trust``: a pickle can execute code, and
    checkpoints holding extra Python objects (optimiser state, numpy scalars) need it off.
    """
    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=not trust)
    except Exception as exc:
        hint = "" if trust else " (if you trust this file, retry with --trust-checkpoint)"
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}{hint}") from exc
    for _ in range(3):
        if isinstance(obj, dict):
            for key in ("state_dict", "model_state_dict", "model", "net", "state"):
                if isinstance(obj.get(key), dict):
                    obj = obj[key]
                    break
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path} holds no state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return {_strip(k, ("module.", "_orig_mod.")): v for k, v in tensors.items()}


def _strip(key: str, prefixes: tuple[str, ...]) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def _is_buffer_count(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def num_classes(state: dict[str, Any]) -> int:
    """Classes of the head: rows of the last 2-D weight (1 → a single fake logit, 2 → real/fake)."""
    weights = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    if not weights:
        raise CheckpointError("no linear classifier weight found in the checkpoint")
    classes = int(weights[-1].shape[0])
    if classes not in (1, 2):
        raise CheckpointError(f"the classifier has {classes} outputs; expected 1 (fake logit) or 2")
    return classes


def match_state_dict(model: Any, state: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Map checkpoint names onto the model's: by name (after wrapper prefixes and head renames), else by
    position when both hold the same sequence of shapes (other ports of the same architecture, such as
    efficientnet-pytorch or Cadene's Xception, name layers differently but order them identically)."""
    target = {k: v for k, v in model.state_dict().items() if not _is_buffer_count(k)}
    source = {k: v for k, v in state.items() if not _is_buffer_count(k)}
    head = model.default_cfg.get("classifier", "classifier") + "."
    renamed: dict[str, Any] = {}
    for key, value in source.items():
        key = _strip(key, _WRAPPERS)
        if key not in target:
            for alias in _HEADS:
                if key.startswith(alias) and head + key[len(alias):] in target:
                    key = head + key[len(alias):]
                    break
        renamed[key] = value
    if set(renamed) == set(target) and all(renamed[k].shape == target[k].shape for k in target):
        return renamed, "names"
    source_shapes = [tuple(v.shape) for v in source.values()]
    target_shapes = [tuple(v.shape) for v in target.values()]
    if source_shapes == target_shapes:
        return dict(zip(target, source.values(), strict=True)), "position"
    missing = sorted(set(target) - set(renamed))
    unexpected = sorted(set(renamed) - set(target))
    wrong = [f"{k} {tuple(renamed[k].shape)} vs {tuple(target[k].shape)}"
             for k in target if k in renamed and renamed[k].shape != target[k].shape]
    raise CheckpointError(
        f"checkpoint does not fit {model.default_cfg.get('architecture', type(model).__name__)}: "
        f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
        f"{len(wrong)} with other shapes (e.g. {wrong[:3]}); {len(source)} vs {len(target)} tensors"
    )


def build_model(arch: str, classes: int) -> Any:
    from ml.build.importers.timm_shim import import_timm

    if arch not in ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {arch!r}; choose from {sorted(ARCHITECTURES)}")
    timm = import_timm()
    return timm.create_model(ARCHITECTURES[arch].timm_name, pretrained=False, num_classes=classes).eval()


def _p_fake(model: Any, classes: int, mean: list[float], std: list[float]) -> Any:
    """Wrap the net in the deepfake pipeline's classifier contract: input ``image`` RGB NCHW on [0, 255]
    (normalisation inside the graph), output ``p_fake`` [N]. A 2-class head takes class 1 as fake.

    A second output ``logit`` (the pre-sigmoid score) lets the export check see differences that a
    saturated probability would hide."""
    import torch

    class PFake(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.net((x - self.get_buffer("mean")) / self.get_buffer("std"))
            logit = logits[:, 0] if classes == 1 else logits[:, 1] - logits[:, 0]
            return torch.sigmoid(logit), logit

    return PFake().eval()


def export_onnx(model: Any, path: Path, size: int, seed: int = 0) -> float:
    """Export with a dynamic batch; return the larger of max |Δp_fake| and max |Δlogit| / max(1, |logit|)
    between torch and ONNX Runtime over a batch of two."""
    import onnxruntime as ort
    import torch

    dummy = torch.rand(1, 3, size, size) * 255
    with torch.no_grad():
        torch.onnx.export(
            model, (dummy,), str(path), input_names=["image"], output_names=["p_fake", "logit"],
            dynamic_axes={"image": {0: "N"}, "p_fake": {0: "N"}, "logit": {0: "N"}}, opset_version=17,
            dynamo=False,
        )
    rng = np.random.default_rng(seed)
    x = (rng.random((2, 3, size, size)) * 255).astype(np.float32)
    with torch.no_grad():
        p_torch, logit_torch = (t.numpy() for t in model(torch.from_numpy(x)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    p_onnx, logit_onnx = session.run(["p_fake", "logit"], {"image": x})
    logit_scale = max(1.0, float(np.abs(logit_torch).max()))
    return max(float(np.abs(p_torch - p_onnx).max()), float(np.abs(logit_torch - logit_onnx).max()) / logit_scale)


def _template(root: Path) -> Manifest:
    repo = ModelRepository(root)
    if not repo.versions(TEMPLATE_MODEL):
        raise ModelError(
            "no_face_detector",
            f"no {TEMPLATE_MODEL!r} model in {root}: the deepfake pipeline needs its face-detector files. "
            f"Build it first (deepscreen models build {TEMPLATE_MODEL}), then import.",
        )
    template = repo.manifest(TEMPLATE_MODEL)
    if not any(role == "detector" or role.startswith("detector.") for role in template.files):
        raise ModelError("no_face_detector", f"{TEMPLATE_MODEL}/{template.version} has no detector.* files")
    return template


def import_checkpoint(
    root: Path, arch: str, checkpoint: Path, name: str, version: str, input_size: int | None = None,
    trust: bool = False, force: bool = False, mean: list[float] | None = None, std: list[float] | None = None,
    threshold: float = 0.5,
) -> ImportResult:
    """Write ``<root>/<name>/<version>/`` from ``checkpoint``; refuse on any mismatch or parity failure."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or not re.fullmatch(r"[A-Za-z0-9_.-]+", version):
        raise ValueError("name and version may hold only letters, digits, '.', '_' and '-'")
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {arch!r}; choose from {sorted(ARCHITECTURES)}")
    spec = ARCHITECTURES[arch]
    size = input_size or spec.input_size
    template = _template(root)
    directory = root / name / version
    if (directory / MANIFEST).exists() and not force:
        raise ModelError("version_exists", f"{name}/{version} already exists (use --force to replace it)")
    digest = sha256_file(checkpoint)
    state = read_state_dict(checkpoint, trust)
    classes = num_classes(state)
    model = build_model(arch, classes)
    mapped, how = match_state_dict(model, state)
    model.load_state_dict({**model.state_dict(), **mapped}, strict=True)
    mean, std = mean or spec.mean, std or spec.std
    wrapped = _p_fake(model, classes, mean, std)

    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    onnx_path = directory / "classifier.onnx"
    diff = export_onnx(wrapped, onnx_path, size)
    if not diff <= PARITY_LIMIT:
        shutil.rmtree(directory)
        raise CheckpointError(f"ONNX export differs from torch by {diff:.2e} (> {PARITY_LIMIT}); not written")

    files = {"classifier": file_entry(directory, onnx_path)}
    for role, entry in template.files.items():
        if role == "detector" or role.startswith("detector."):
            dst = directory / entry["path"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(template.directory / entry["path"], dst)
            files[role] = file_entry(directory, dst)
    manifest = Manifest(
        name=name, version=version, task="deepfake", pipeline="deepfake", directory=directory,
        description=f"{arch} deepfake classifier imported from a user checkpoint",
        # The template's threshold was fitted for its own classifier, not this one: 0.5 unless told.
        files=files, labels=LABELS, thresholds={"fake": threshold},
        media=list(template.media), options={**template.options, "crop_size": size},
        preprocessing={**template.preprocessing, "normalise": {
            "mean": [m * 255 for m in mean], "std": [s * 255 for s in std], "in_graph": True}},
        inputs={**template.inputs, "classifier": {
            "name": "image", "shape": ["N", 3, size, size], "layout": "NCHW", "dtype": "float32",
            "range": [0, 255], "output": "p_fake"}},
        provenance={
            "imported_from": "user checkpoint", "checkpoint_sha256": digest, "architecture": arch,
            "timm_model": spec.timm_name, "state_dict_mapping": how, "onnx_max_abs_diff": diff,
            "detector_from": f"{template.name}/{template.version}",
            "imported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )
    manifest.save()
    (directory / "MODEL_CARD.md").write_text(_card(manifest, spec, digest, diff, how, classes))
    return ImportResult(manifest, diff, digest, how)


def _card(manifest: Manifest, spec: Arch, digest: str, diff: float, how: str, classes: int) -> str:
    size = manifest.options["crop_size"]
    norm = manifest.preprocessing["normalise"]
    return f"""# {manifest.name} v{manifest.version} — imported deepfake classifier

- **Source weights:** imported from user checkpoint {digest} (sha256). deepscreen did not train these
  weights and cannot vouch for their licence or training data: the operator who imported them must.
- **Architecture:** timm `{spec.timm_name}` ({spec.origin}); head with {classes} output(s), exported as
  `p_fake` (sigmoid of a single logit, or softmax class 1 of two) and `logit`. Tensors matched by {how}.
- **Input:** face crops resized to {size}x{size}, RGB on [0, 255]; inside the graph
  (x - {[round(m, 2) for m in norm['mean']]}) / {[round(s, 2) for s in norm['std']]}. If the checkpoint was
  trained with other normalisation, re-import with the right `--mean/--std`: a mismatch silently ruins
  accuracy. Threshold `fake` >= {manifest.thresholds['fake']} (not tuned by deepscreen).
- **Export check:** ONNX vs torch max |diff| {diff:.2e} on random inputs (limit {PARITY_LIMIT}).
- **Face detector:** copied from {manifest.provenance['detector_from']}.
- **Evaluation by deepscreen:** none at import. Run `deepscreen eval {manifest.name} --version
  {manifest.version} --data DIR` on a labelled set (real/ and fake/ folders) before making it live.
- **Known limits:** those of the original checkpoint; published deepfake detectors generalise poorly to
  manipulation methods and compression levels they were not trained on.
"""
