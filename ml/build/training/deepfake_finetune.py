"""SBI with the backbone trained too: EfficientNet-Lite0 + linear head, end to end in torch.

The frozen-backbone recipe (``deepfake_train.train``) only moves a linear head over ImageNet features,
which were never made to see blending seams. Given real faces and time (a GPU if there is one), training
the whole network on the same SBI pairs lets the early, high-resolution layers learn the seam itself —
the way the SBI paper trains. Everything else is shared with the head recipe: face loading, the
by-photo split, the pairs (``make_pairs``: fresh views and blends every epoch), the held-out AUROC on
pseudo-fakes of unseen photos, and the bias shift that puts the held-out equal-error point at 0.5.

Outputs, beside ``out`` (the head .npz the deepfake/1 builder reads, with ``fine_tuned`` = 1):
``<out>.backbone.npz`` (the trained backbone's state, numpy arrays, no pickle), ``<out>.onnx`` (the whole
classifier exported exactly as ``ml.build.efficientnet.export_classifier`` exports deepfake/1's, checked
against torch), and ``<out>.json`` (the report). BatchNorm statistics stay frozen at ImageNet's (batches
of a few faces would make them noise); its affine weights train. Seeded: the same seed, data and device
give the same weights (on the CPU bit for bit; cuDNN is put in deterministic mode on CUDA).
"""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from ml.build.efficientnet import torch_model
from ml.build.metrics import auroc, eer_threshold
from ml.build.training.deepfake_train import TrainReport, equal_error_bias, load_faces, make_pairs, save_head
from ml.face_crops import DEFAULT_SIZE, to_batch
from ml.manifest import ModelError

FEATURES = 1280  # EfficientNet-Lite0's pooled width
PARITY_TOLERANCE = 1e-4


def pick_device(setting: str = "auto") -> str:
    """``auto``: CUDA when torch sees one, else the CPU; ``cuda`` without one is an error, not a fallback."""
    import torch

    setting = setting.lower()
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no CUDA device")
    if setting not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {setting!r}")
    return setting


def _freeze_batchnorm(model: Any) -> None:
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def _scores(model: Any, crops: list[np.ndarray], device: str, batch: int = 32) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = [model(torch.from_numpy(to_batch(crops[i: i + batch])).to(device)).float().cpu().numpy()
               for i in range(0, len(crops), batch)]
    return np.concatenate(out).astype(np.float64)


def backbone_path(out: Path) -> Path:
    return out.with_suffix(".backbone.npz")


def fine_tuned_model(out: Path) -> Any:
    """The classifier (torch, eval mode, CPU) a fine-tune wrote at ``out``: head + trained backbone."""
    import torch

    with np.load(out) as npz:
        head = (npz["weight"].astype(np.float32), float(npz["bias"]))
    with contextlib.redirect_stdout(io.StringIO()):
        model = torch_model(head)
    with np.load(backbone_path(out)) as npz:
        model.net.load_state_dict({k: torch.from_numpy(npz[k]) for k in npz.files})
    return model.eval()


def export_fine_tuned(model: Any, path: Path) -> Path:
    """ONNX with the settings of ``export_classifier``: ``image`` (N, 3, 224, 224) 0..255 → ``p_fake``."""
    import warnings

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.cpu().eval(), (torch.zeros(2, 3, DEFAULT_SIZE, DEFAULT_SIZE),), str(path), input_names=["image"],
            output_names=["p_fake"], dynamic_axes={"image": {0: "N"}, "p_fake": {0: "N"}}, opset_version=17,
            dynamo=False,
        )
    return path


def fine_tune(
    faces_dir: Path, out: Path, seed: int = 0, epochs: int = 3, batch_size: int = 16, lr: float = 1e-4,
    head_lr: float = 1e-3, weight_decay: float = 1e-4, held_out: float = 0.2, held_out_views: int = 4,
    sharp_repeat: int = 10, device: str = "auto", max_steps: int | None = None, limit: int | None = None,
) -> TrainReport:
    """Train backbone + head on SBI pairs of the photos in ``faces_dir``; write the files listed above.

    ``max_steps`` stops early (a smoke run); ``limit`` uses only the first photos (by name).
    """
    import torch
    import torch.nn.functional as F

    started = time.perf_counter()
    device = pick_device(device)
    if device == "cuda":
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    faces = load_faces(faces_dir, rng, held_out, limit)
    test_crops, test_y = make_pairs([faces.found[n] for n in faces.held_out] * held_out_views,
                                    np.random.default_rng(seed + 1))

    with contextlib.redirect_stdout(io.StringIO()):  # the weights package prints a line on load
        model = torch_model((np.zeros(FEATURES, np.float32), 0.0)).to(device)
    head_params = list(model.linear.parameters())
    head_ids = {id(p) for p in head_params}
    optimiser = torch.optim.AdamW([
        {"params": [p for p in model.parameters() if id(p) not in head_ids], "lr": lr},
        {"params": head_params, "lr": head_lr},
    ], weight_decay=weight_decay)
    steps, samples, loss_value = 0, 0, float("nan")
    for _ in range(epochs):
        drawn = [faces.found[n] for n in faces.train for _ in range(sharp_repeat if n in faces.sharp else 1)]
        crops, labels = make_pairs(drawn, rng)
        order = rng.permutation(len(labels))
        model.train()
        _freeze_batchnorm(model)
        for start in range(0, len(order), batch_size):
            pick = order[start: start + batch_size]
            x = torch.from_numpy(to_batch([crops[i] for i in pick])).to(device)
            y = torch.from_numpy(labels[pick].astype(np.float32)).to(device)
            loss = F.binary_cross_entropy(model(x).clamp(1e-6, 1 - 1e-6), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            steps, samples, loss_value = steps + 1, samples + len(pick), float(loss.detach().cpu())
            if max_steps is not None and steps >= max_steps:
                break
        if max_steps is not None and steps >= max_steps:
            break
    model.eval()
    shift = equal_error_bias(test_y, _scores(model, test_crops, device))
    with torch.no_grad():
        model.linear.bias += shift
    scores = _scores(model, test_crops, device)
    report = TrainReport(
        seed=seed, epochs=epochs, images=faces.images(faces_dir), skipped=faces.skipped, train=faces.train,
        held_out=faces.held_out, train_samples=samples, held_out_samples=len(test_y), train_loss=loss_value,
        held_out_auroc=float(auroc(test_y, scores) or 0.0), threshold=eer_threshold(test_y, scores),
        seconds=round(time.perf_counter() - started, 1), mode="fine_tune", device=device, steps=steps,
        notes=["held-out = real crops vs SBI pseudo-fakes of photos never trained on; not real deepfakes",
               f"backbone and head trained end to end (AdamW, lr {lr} / head {head_lr}, batch {batch_size}); "
               "BatchNorm statistics frozen at ImageNet's",
               f"bias shifted by {shift:+.3f} so the held-out equal-error point is p = 0.5"],
    )
    model = model.cpu()
    weight = model.linear.weight.detach().numpy()[0].astype(np.float32)
    save_head(out, weight, float(model.linear.bias.detach()[0]), report, fine_tuned=np.int8(1))
    np.savez(backbone_path(out), **{k: v.detach().cpu().numpy() for k, v in model.net.state_dict().items()})
    _check_export(model, export_fine_tuned(model, out.with_suffix(".onnx")), test_crops[:8])
    return report


def _check_export(model: Any, path: Path, crops: list[np.ndarray]) -> None:
    from ml.runtime import CPU, make_session

    batch = to_batch(crops)
    expected = _scores(model, crops, "cpu")
    got = make_session(path, [CPU], 0).run(None, {"image": batch})[0]
    diff = float(np.abs(expected - got).max())
    if diff > PARITY_TOLERANCE:
        raise ModelError("parity_failed", f"fine-tuned classifier: ONNX differs from torch by {diff}")
