"""MesoNet (Afchar et al., WIFS 2018) ported to torch, its Keras HDF5 weights read with h5py, ONNX export.

The authors' models (DariusAf/MesoNet ``classifiers.py``, Keras 2.1.5, Apache-2.0) take a 256x256 RGB
face crop in [0, 1] and end in one sigmoid that is P(real): their data generator numbered the classes
alphabetically from folder names (``df`` = 0, ``real`` = 1). Keras details the port must keep:

- convolutions and max-pools use ``padding='same'`` (TF pads the bottom/right first; for pools the pad
  never wins the max). At 256 px every pool divides evenly, so the pool padding is a no-op there;
- ``Conv2D(..., activation='relu')`` comes *before* BatchNormalization, whose epsilon is Keras's 1e-3;
- Flatten runs on NHWC tensors, so the first Dense layer's 1024 inputs are ordered (y, x, channel):
  we permute NCHW → NHWC before flattening instead of reshuffling the Dense kernel;
- kernels are stored (H, W, in, out) for convolutions and (in, out) for Dense layers.

The weight files hold layer names but no model config. Keras numbers layers in creation order, so
sorting each kind (conv2d_N, batch_normalization_N, dense_N) by N gives the order our modules are built
in; shapes are checked on load. One detail the files answer: the saved Meso4 graphs have no
``leaky_re_lu`` layer (MesoInception's have one), i.e. Meso4 was trained with a linear Dense(16) — the
LeakyReLU in today's ``classifiers.py`` came later. ``Meso4(hidden_activation=...)`` lets a caller
compare; the default follows the files (see ``tests/ml/test_mesonet.py`` for the sample-crop check).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "mesonet"
SIZE = 256  # the authors' input side
MODELS = {  # file stem → architecture
    "Meso4_DF": "Meso4", "Meso4_F2F": "Meso4",
    "MesoInception_DF": "MesoInception4", "MesoInception_F2F": "MesoInception4",
}
LICENCE_FILES = ("LICENSE", "NOTICE")
BN_EPS = 1e-3  # Keras BatchNormalization default


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'same' padding (before, after) for one axis: the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SamePool(nn.Module):
    """MaxPooling2D(pool_size=k, strides=k, padding='same')."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _same_pad(int(x.shape[2]), self.kernel, self.kernel)
        left, right = _same_pad(int(x.shape[3]), self.kernel, self.kernel)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.kernel)


def _conv(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Conv2d:
    """Stride-1 'same' convolution (odd kernels: symmetric padding equals TF's)."""
    return nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation)


class _Block(nn.Module):
    """Conv(relu) → BatchNorm → MaxPool, the unit Meso4 stacks four times.

    ``norm_after_pool`` swaps the last two (``pool_before_norm`` sets it where that is the same
    function): the BatchNorm then touches a quarter (pool 2) or a sixteenth (pool 4) of the values."""

    def __init__(self, cin: int, cout: int, kernel: int, pool: int) -> None:
        super().__init__()
        self.conv = _conv(cin, cout, kernel)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.pool = SamePool(pool)
        self.norm_after_pool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_after_pool:
            return self.bn(self.pool(F.relu(self.conv(x))))
        return self.pool(self.bn(F.relu(self.conv(x))))


class _Inception(nn.Module):
    """InceptionLayer(a, b, c, d) → BatchNorm → MaxPool(2): 1x1 | 1x1→3x3 | 1x1→3x3 dil 2 | 1x1→3x3 dil 3."""

    def __init__(self, cin: int, a: int, b: int, c: int, d: int) -> None:
        super().__init__()
        # Registered in the order Keras created them (conv2d numbering in the weight files).
        self.b1 = _conv(cin, a, 1)
        self.b2_in, self.b2 = _conv(cin, b, 1), _conv(b, b, 3)
        self.b3_in, self.b3 = _conv(cin, c, 1), _conv(c, c, 3, dilation=2)
        self.b4_in, self.b4 = _conv(cin, d, 1), _conv(d, d, 3, dilation=3)
        self.bn = nn.BatchNorm2d(a + b + c + d, eps=BN_EPS)
        self.pool = SamePool(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([
            F.relu(self.b1(x)),
            F.relu(self.b2(F.relu(self.b2_in(x)))),
            F.relu(self.b3(F.relu(self.b3_in(x)))),
            F.relu(self.b4(F.relu(self.b4_in(x)))),
        ], dim=1)
        return self.pool(self.bn(y))


class _Head(nn.Module):
    """Flatten (NHWC order) → Dense(16) → activation → Dense(1, sigmoid) = P(real). Dropout is a no-op at
    inference and is left out."""

    def __init__(self, hidden_activation: str) -> None:
        super().__init__()
        if hidden_activation not in ("linear", "leaky_relu"):
            raise ValueError(f"hidden_activation must be 'linear' or 'leaky_relu', not {hidden_activation!r}")
        self.hidden_activation = hidden_activation
        self.fc1 = nn.Linear(16 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc1(x.permute(0, 2, 3, 1).flatten(1))
        if self.hidden_activation == "leaky_relu":
            y = F.leaky_relu(y, 0.1)
        return torch.sigmoid(self.fc2(y))[:, 0]


class Meso4(nn.Module):
    """Meso-4: input (N, 3, 256, 256) RGB in [0, 1] → P(real) (N,)."""

    def __init__(self, hidden_activation: str = "linear") -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            _Block(3, 8, 3, 2), _Block(8, 8, 5, 2), _Block(8, 16, 5, 2), _Block(16, 16, 5, 4),
        )
        self.head = _Head(hidden_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))

    def after_first(self, y: torch.Tensor) -> torch.Tensor:
        """The rest of ``forward`` from the first block's output (``SharedFirstBlock`` ran that block)."""
        return self.head(self.blocks[1:](y))


class MesoInception4(nn.Module):
    """MesoInception-4: input (N, 3, 256, 256) RGB in [0, 1] → P(real) (N,)."""

    def __init__(self, hidden_activation: str = "leaky_relu") -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            _Inception(3, 1, 4, 4, 2), _Inception(11, 2, 4, 4, 2), _Block(12, 16, 5, 2), _Block(16, 16, 5, 4),
        )
        self.head = _Head(hidden_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


def _keras_layers(path: Path) -> dict[str, list[dict[str, np.ndarray]]]:
    """Weights per layer kind, in Keras creation order: {"conv2d": [{"kernel", "bias"}, …], …}."""
    import h5py

    kinds: dict[str, list[tuple[int, dict[str, np.ndarray]]]] = {}
    with h5py.File(path, "r") as fh:
        root = fh.get("model_weights", fh)  # a weights-only file, or a whole saved model
        for raw in root.attrs["layer_names"]:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            group = root[name]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["weight_names"]]
            if not names:
                continue
            match = re.fullmatch(r"(.+)_(\d+)", name)
            if match is None:
                raise ValueError(f"{path.name}: unexpected layer name {name!r}")
            weights = {n.split("/")[-1].split(":")[0]: np.asarray(group[n]) for n in names}
            kinds.setdefault(match.group(1), []).append((int(match.group(2)), weights))
    return {kind: [w for _, w in sorted(rows, key=lambda r: r[0])] for kind, rows in kinds.items()}


def _copy(target: torch.Tensor, value: np.ndarray, where: str) -> None:
    if tuple(target.shape) != value.shape:
        raise ValueError(f"{where}: shape {value.shape} does not fit {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)))


def load_keras_weights(model: nn.Module, path: Path) -> nn.Module:
    """Copy a Keras 2 MesoNet HDF5 file into ``model`` (Meso4 or MesoInception4); every tensor is used."""
    layers = _keras_layers(path)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    denses = [m for m in model.modules() if isinstance(m, nn.Linear)]
    expected = {"conv2d": len(convs), "batch_normalization": len(norms), "dense": len(denses)}
    found = {kind: len(rows) for kind, rows in layers.items()}
    if found != expected:
        raise ValueError(f"{path.name} holds {found}; {type(model).__name__} needs {expected}")
    for i, (conv, w) in enumerate(zip(convs, layers["conv2d"], strict=True)):
        _copy(conv.weight, w["kernel"].transpose(3, 2, 0, 1), f"{path.name} conv2d #{i}")  # HWIO → OIHW
        assert conv.bias is not None
        _copy(conv.bias, w["bias"], f"{path.name} conv2d #{i} bias")
    for i, (norm, w) in enumerate(zip(norms, layers["batch_normalization"], strict=True)):
        assert norm.running_mean is not None and norm.running_var is not None
        for target, key in ((norm.weight, "gamma"), (norm.bias, "beta"),
                            (norm.running_mean, "moving_mean"), (norm.running_var, "moving_variance")):
            _copy(target, w[key], f"{path.name} batch_normalization #{i} {key}")
    for i, (dense, w) in enumerate(zip(denses, layers["dense"], strict=True)):
        _copy(dense.weight, w["kernel"].T, f"{path.name} dense #{i}")  # (in, out) → (out, in)
        _copy(dense.bias, w["bias"], f"{path.name} dense #{i} bias")
    return model.eval()


def load_model(name: str, weights: Path = WEIGHTS, hidden_activation: str | None = None) -> nn.Module:
    """One of ``MODELS`` with its weights, in eval mode: (N, 3, 256, 256) in [0, 1] → P(real) (N,)."""
    if name not in MODELS:
        raise KeyError(f"unknown MesoNet model {name!r}; known: {', '.join(MODELS)}")
    arch = Meso4 if MODELS[name] == "Meso4" else MesoInception4
    model = arch() if hidden_activation is None else arch(hidden_activation)
    return load_keras_weights(model, weights / f"{name}.h5")


class SharedFirstBlock(nn.Module):
    """Several Meso4s' first blocks as one: their convolutions read the same pixels, so one convolution
    with all their filters does their work in one pass (the same multiply-adds), and its pool and norm
    run once on all the channels; ``forward`` hands each member its own channels back.

    Each output channel is computed as before, so the function is the same; in the exported ONNX graph
    two Meso4s cost ~23 % less CPU per crop (the first block is the only one at 256 x 256)."""

    def __init__(self, blocks: list[_Block]) -> None:
        super().__init__()
        first = blocks[0]
        self.widths = [b.conv.out_channels for b in blocks]
        self.conv = _conv(first.conv.in_channels, sum(self.widths), first.conv.kernel_size[0])
        self.bn = nn.BatchNorm2d(sum(self.widths), eps=first.bn.eps)
        self.pool = first.pool
        self.norm_after_pool = first.norm_after_pool
        with torch.no_grad():
            self.conv.weight.copy_(torch.cat([b.conv.weight for b in blocks]))
            cast(torch.Tensor, self.conv.bias).copy_(torch.cat([cast(torch.Tensor, b.conv.bias) for b in blocks]))
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(self.bn, name).copy_(torch.cat([getattr(b.bn, name) for b in blocks]))

    @staticmethod
    def joins(blocks: list[_Block]) -> bool:
        """Only blocks that differ in nothing but their weights: same input, kernel, pool and order."""
        def shape(b: _Block) -> tuple[object, ...]:
            return (b.conv.in_channels, b.conv.kernel_size, b.conv.padding, b.conv.stride, b.conv.dilation,
                    b.conv.groups, b.pool.kernel, b.bn.eps, b.norm_after_pool)
        return len(blocks) > 1 and len({shape(b) for b in blocks}) == 1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = F.relu(self.conv(x))
        y = self.bn(self.pool(y)) if self.norm_after_pool else self.pool(self.bn(y))
        return torch.split(y, self.widths, dim=1)


class FakeScore(nn.Module):
    """The screening graph: 0..255 RGB NCHW → /255 → mean P(fake) = mean(1 - P(real)) over ``members``.

    With ``share_first`` and members that are all Meso4s, their first blocks run as one
    (``SharedFirstBlock``)."""

    def __init__(self, members: list[nn.Module], share_first: bool = False) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        firsts = [b for m in members if isinstance(m, Meso4) and isinstance(b := m.blocks[0], _Block)]
        joined = share_first and len(firsts) == len(members) and SharedFirstBlock.joins(firsts)
        self.first = SharedFirstBlock(firsts) if joined else None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image / 255.0
        if self.first is None:
            p_real = [m(x) for m in self.members]
        else:
            p_real = [cast(Meso4, m).after_first(y) for m, y in zip(self.members, self.first(x), strict=True)]
        return torch.stack([1.0 - p for p in p_real], dim=0).mean(dim=0)


def pool_before_norm(model: nn.Module) -> int:
    """Move each Meso4 block's BatchNorm after its MaxPool where every channel's scale
    (gamma / sqrt(var + eps)) is positive; returns how many blocks moved.

    An inference BatchNorm is a per-channel map x → s·x + t, increasing where s > 0, and an increasing
    map commutes with a max: the same function, with the norm on 4-16x fewer values. In the exported
    ONNX graph the classifier costs ~14 % less CPU per crop (the first block's norm ran at 256 x 256);
    scores agree to float rounding (≤ 1.2e-7 measured). A block with any s ≤ 0 keeps the original order."""
    moved = 0
    for block in model.modules():
        if isinstance(block, _Block) and bool((block.bn.weight > 0).all()):
            block.norm_after_pool = True
            moved += 1
    return moved


def fake_score(names: list[str], weights: Path = WEIGHTS) -> FakeScore:
    """The screening graph, with ``pool_before_norm`` applied to every member and Meso4 members'
    first blocks shared."""
    members = [load_model(n, weights) for n in names]
    for member in members:
        pool_before_norm(member)
    return FakeScore(members, share_first=True).eval()


def torch_p_fake(model: nn.Module, batch: np.ndarray) -> np.ndarray:
    """Run a FakeScore on (N, 3, 256, 256) float32 0..255."""
    with torch.no_grad():
        out: np.ndarray = model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()
    return out


def export_onnx(model: FakeScore, path: Path, opset: int = 17) -> Path:
    """ONNX with a dynamic batch axis: ``image`` (N, 3, 256, 256) float32 0..255 → ``p_fake`` (N,)."""
    import contextlib
    import io
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), (torch.zeros(2, 3, SIZE, SIZE),), str(path), input_names=["image"],
            output_names=["p_fake"], dynamic_axes={"image": {0: "N"}, "p_fake": {0: "N"}},
            opset_version=opset, dynamo=False,
        )
    return path


def read_crop(path: Path, size: int = SIZE) -> np.ndarray:
    """An authors'-style sample crop as (size, size, 3) uint8 RGB, resized the way Keras's
    ``load_img(target_size=…)`` did in their example (PIL, nearest neighbour)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.NEAREST))


def describe() -> dict[str, Any]:
    """Provenance of the committed weight files (for manifests and cards)."""
    from ml.manifest import sha256_file

    return {
        "source": "DariusAf/MesoNet commit 2144d56a30e48cdcac1976ff13a1c5cdc86376c6 (Apache-2.0)",
        "paper": "Afchar, Nozick, Yamagishi, Echizen: MesoNet, a Compact Facial Video Forgery Detection "
                 "Network (WIFS 2018)",
        "files": {f"{n}.h5": sha256_file(WEIGHTS / f"{n}.h5") for n in MODELS},
    }
