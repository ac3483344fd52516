"""Small real ONNX models for the optimisation tests, exported with torch (a build/test-only dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def export_tiny_cnn(path: Path, size: int = 32, classes: int = 2, seed: int = 0) -> Path:
    """Two conv-bn-relu blocks, pool, linear, softmax; dynamic batch; input ``input`` is NCHW float32."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, classes), nn.Softmax(dim=1),
    ).eval()
    # Non-trivial batch-norm statistics, so that folding them is actually exercised.
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    dummy = torch.rand(1, 3, size, size)
    torch.onnx.export(
        net, (dummy,), str(path), input_names=["input"], output_names=["probs"],
        dynamic_axes={"input": {0: "batch"}, "probs": {0: "batch"}}, opset_version=17, dynamo=False,
    )
    return path


def image_feeds(n: int, size: int = 32, batch: int = 1, seed: int = 1) -> list[dict[str, np.ndarray]]:
    """Smooth random images (low-frequency noise, like photos) rather than white noise."""
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(n):
        coarse = rng.random((batch, 3, size // 4, size // 4), dtype=np.float32)
        feeds.append({"input": np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3).astype(np.float32)})
    return feeds
