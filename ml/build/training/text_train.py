"""``deepscreen train text``: the text/2 hate model, trained, stacked, calibrated and validated.

Recipe (each step measured in the report; see docs in the model card):
1. Split every source into train / held-out by group (ml.build.training.text_data).
2. On the train part: LoRA-fine-tune MiniLM with a linear hate head (text_lora) and fit a hashed
   character n-gram logistic model (text_char; obfuscation: l33t, spacing, emoji).
3. On the held-out part, never on training rows: fit the stacker, a logistic regression (the one
   trainer, ml.build.logistic) over [MiniLM logit, char logit, hatesonar hate / offensive, profanity]
   logits. Fitted on rows none of the parts saw, it is also the calibration (Platt scaling).
4. Figures: per source on the held-out part, with the stacker cross-fitted over group folds so no row
   is scored by a stacker that saw it; bootstrap 95 % intervals; plus leave-one-source-out AUROC of the
   cheap parts (char model and stacker), which can be retrained per source on two cores.

The fine-tune is the expensive step (12-60 minutes on two shared cores): its adapters are cached in
``out`` and reused when the data, split and config are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml.build.logistic import LogisticRegression, base_rate_logit
from ml.build.training.text_char import char_logits, char_matrix, fit_char_model
from ml.build.training.text_data import TextRow, data_fingerprint, describe, group_folds, is_held_out, read_rows
from ml.build.training.text_lora import LoraConfig
from ml.build.training.text_probes import functional_probe
from ml.build.training.text_validation import auroc_only, by_source, figures
from ml.text_hate import STACK_FEATURES, CharModel, HateStacker, stack_matrix

ADAPTERS, ADAPTERS_META = "lora.npz", "lora.json"
PRETRAINED = ("hatesonar_hate", "hatesonar_offensive", "profanity")
DEFAULT_CACHE = Path(__file__).resolve().parents[3] / "var" / "cache" / "text_train"  # var/ is git-ignored


@dataclass
class TextTrainConfig:
    seed: int = 0
    lora: LoraConfig = field(default_factory=LoraConfig)
    threads: int = 2

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "lora": self.lora.to_json(), "threads": self.threads}


def split(rows: list[TextRow], seed: int) -> tuple[list[TextRow], list[TextRow]]:
    held = [is_held_out(r, seed) for r in rows]
    return [r for r, h in zip(rows, held, strict=True) if not h], [r for r, h in zip(rows, held, strict=True) if h]


def _rows_digest(rows: list[TextRow]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(f"{row.label}\x1f{row.source}\x1f{row.text}\x1e".encode())
    return digest.hexdigest()


def fine_tune_stage(train_rows: list[TextRow], out: Path, config: TextTrainConfig,
                    log: Any = print) -> tuple[Path, dict[str, Any]]:
    """Fit (or reuse) the LoRA adapters and head on ``train_rows``; returns their file and metadata."""
    from ml.build.training.text_lora import fine_tune, save_adapters

    out.mkdir(parents=True, exist_ok=True)
    key = {"rows_sha256": _rows_digest(train_rows), "lora": config.lora.to_json()}
    meta_path, path = out / ADAPTERS_META, out / ADAPTERS
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            log(f"reusing the fine-tuned adapters in {path} (same rows and config)")
            return path, {**meta, "reused": True}
    texts = [r.text for r in train_rows]
    labels = np.array([r.label for r in train_rows], np.float32)
    model, info = fine_tune(texts, labels, config.lora, log=log, threads=config.threads)
    save_adapters(model, config.lora, path)
    meta = {"key": key, "train_rows": len(train_rows), **info,
            "date": time.strftime("%Y-%m-%d"), "adapters_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return path, {**meta, "reused": False}


def load_data(paths: list[Path]) -> tuple[list[TextRow], dict[str, str]]:
    return read_rows(paths), data_fingerprint(paths)


def run_fine_tune_only(paths: list[Path], out: Path, config: TextTrainConfig) -> dict[str, Any]:
    """Step 2's expensive half alone (to start the fine-tune early; ``train`` reuses its output)."""
    rows, _ = load_data(paths)
    train_rows, _ = split(rows, config.seed)
    _, meta = fine_tune_stage(train_rows, out, config)
    return meta


def pretrained_scores(text_sets: list[list[str]], scratch: Path, threads: int) -> list[dict[str, np.ndarray]]:
    """hatesonar P(hate), P(offensive) and P(profane) per text set, from the same ONNX files text/1 and
    text/2 ship (exported once)."""
    from ml.build.builders.text import export_hatesonar, export_profanity
    from ml.runtime import make_session
    from ml.text_models import HateSonarModel, ProfanityModel

    sonar_path, _ = export_hatesonar(scratch)
    profanity_path, _ = export_profanity(scratch)
    sonar = HateSonarModel(make_session(sonar_path, ["CPUExecutionProvider"], threads))
    profanity = ProfanityModel(make_session(profanity_path, ["CPUExecutionProvider"], threads))
    out = []
    for texts in text_sets:
        chunks = [texts[i:i + 4096] for i in range(0, len(texts), 4096)]
        probs = np.concatenate([sonar.predict(c) for c in chunks]) if chunks else np.zeros((0, 3), np.float32)
        profane = np.concatenate([profanity.predict(c) for c in chunks]) if chunks else np.zeros(0, np.float32)
        out.append({"hatesonar_hate": probs[:, 0], "hatesonar_offensive": probs[:, 1], "profanity": profane})
    return out


def fit_stacker(x: np.ndarray, y: np.ndarray, seed: int) -> HateStacker:
    """The one logistic trainer on the five stacked logits; its output is the calibrated P(hateful)."""
    model = LogisticRegression(x.shape[1], l2=1e-3, lr=0.05, bias=base_rate_logit(y))
    model.fit(x, y.astype(np.float64), epochs=40, batch=256, seed=seed)
    weights, bias = model.folded()
    return HateStacker(weights=weights.astype(np.float64), bias=bias)


def cross_fitted(x: np.ndarray, y: np.ndarray, folds: list[int], seed: int) -> np.ndarray:
    """Each held-out row scored by a stacker fitted on the other group folds (no row scores itself)."""
    out = np.zeros(len(y))
    fold = np.array(folds)
    for k in sorted(set(folds)):
        mask = fold == k
        stacker = fit_stacker(x[~mask], y[~mask], seed)
        out[mask] = stacker.predict({name: x[mask][:, i] for i, name in enumerate(STACK_FEATURES)} | {
            "hatesonar_hate": _sigmoid(x[mask][:, 2]), "hatesonar_offensive": _sigmoid(x[mask][:, 3]),
            "profanity": _sigmoid(x[mask][:, 4])})
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def leave_one_source_out(rows: list[TextRow], x_char: Any, pretrained: dict[str, np.ndarray],
                         log: Any) -> dict[str, Any]:
    """Per source: the char model refitted without that source and scored on it, beside hatesonar
    (pretrained elsewhere, so already out of source)."""
    y = np.array([r.label for r in rows])
    sources = np.array([r.source for r in rows])
    out: dict[str, Any] = {}
    for name in sorted(set(sources)):
        mask = sources == name
        if y[mask].min() == y[mask].max():
            out[name] = {"n": int(mask.sum()), "positives": int(y[mask].sum()), "auroc": None,
                         "note": "one class only: AUROC undefined"}
            continue
        started = time.perf_counter()
        char = fit_char_model(x_char[np.nonzero(~mask)[0]], y[~mask])
        scores = char_logits(char, x_char[np.nonzero(mask)[0]])
        out[name] = {"char_model": auroc_only(y[mask], scores),
                     "hatesonar_hate": auroc_only(y[mask], pretrained["hatesonar_hate"][mask])}
        log(f"LOSO {name}: char AUROC {out[name]['char_model']['auroc']} "
            f"({time.perf_counter() - started:.0f} s)")
    return out


def char_stage(rows: list[TextRow], in_train: np.ndarray, out: Path, config: TextTrainConfig, loso: bool,
               cache: Path, log: Any = print) -> dict[str, Any]:
    """The parts that do not need the fine-tune: the char model (written to ``out``), its held-out logits,
    the pretrained scores of every row and of the probe, and the leave-one-source-out figures. Cached in
    ``cache`` (keyed by the rows, seed and split) since they take minutes."""
    key = hashlib.sha256(json.dumps({"rows": _rows_digest(rows), "seed": config.seed, "loso": loso,
                                     "in_train": hashlib.sha256(in_train.tobytes()).hexdigest(),
                                     "stage": 1}).encode()).hexdigest()[:24]
    folder = cache / key
    if (folder / "stage.npz").is_file() and (folder / "loso.json").is_file() and (folder / "char.npz").is_file():
        log(f"reusing the char model, pretrained scores and LOSO figures cached in {folder}")
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / "char.npz", out / "char.npz")
        with np.load(folder / "stage.npz") as data:
            return {**{k: data[k] for k in data.files}, "loso": json.loads((folder / "loso.json").read_text())}
    y = np.array([r.label for r in rows])
    x_all = char_matrix([r.text for r in rows])
    char = fit_char_model(x_all[np.nonzero(in_train)[0]], y[in_train])
    out.mkdir(parents=True, exist_ok=True)
    char.save(out / "char.npz")
    char = CharModel.load(out / "char.npz")  # score with the stored (float16) weights, as the runtime does
    log("char model done")
    probe_texts = functional_probe()[0]
    with tempfile.TemporaryDirectory() as scratch:
        pretrained_all, pretrained_probe = pretrained_scores([[r.text for r in rows], probe_texts],
                                                             Path(scratch), config.threads)
    log("pretrained scores done")
    stage: dict[str, Any] = {"char_dev": char_logits(char, x_all[np.nonzero(~in_train)[0]]), **pretrained_all,
                             **{f"probe_{k}": v for k, v in pretrained_probe.items()}}
    stage_loso = leave_one_source_out(rows, x_all, pretrained_all, log) if loso else {}
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "stage.npz").open("wb") as fh:
        np.savez(fh, **stage)
    (folder / "loso.json").write_text(json.dumps(stage_loso))
    shutil.copyfile(out / "char.npz", folder / "char.npz")
    return {**stage, "loso": stage_loso}


def train(paths: list[Path], out: Path, config: TextTrainConfig | None = None, loso: bool = True,
          log: Any = print, cache: Path | None = None) -> dict[str, Any]:
    """Train every part, write ``lora.npz``, ``char.npz``, ``stacker.json`` and ``train_report.json`` to
    ``out`` (default ml/weights/text_v2, what the text/2 builder packages) and return the report."""
    from ml.build.training.text_lora import merged_encoder, predict

    config = config or TextTrainConfig()
    started = time.perf_counter()
    rows, fingerprint = load_data(paths)
    train_rows, dev_rows = split(rows, config.seed)
    log(f"{len(rows)} rows: {len(train_rows)} train, {len(dev_rows)} held out")
    adapters, lora_meta = fine_tune_stage(train_rows, out, config, log)

    dev_texts = [r.text for r in dev_rows]
    y_dev = np.array([r.label for r in dev_rows])
    probe_texts, probe_labels, probe_kinds = functional_probe()
    in_train = np.array([not is_held_out(r, config.seed) for r in rows])
    encoder = merged_encoder(adapters)
    minilm_dev = predict(encoder, dev_texts)[1]
    minilm_probe = predict(encoder, probe_texts)[1]
    log("MiniLM logits done")

    stage = char_stage(rows, in_train, out, config, loso, cache or DEFAULT_CACHE, log)
    char = CharModel.load(out / "char.npz")
    char_dev = stage["char_dev"]
    pretrained_all = {k: stage[k] for k in PRETRAINED}
    pretrained_probe = {k: stage[f"probe_{k}"] for k in PRETRAINED}
    pretrained_dev = {k: v[~in_train] for k, v in pretrained_all.items()}
    parts_dev = {"minilm": minilm_dev, "char": char_dev, **pretrained_dev}
    x_dev = stack_matrix(parts_dev)
    folds = group_folds(dev_rows, 5, config.seed)
    crossfit = cross_fitted(x_dev, y_dev, folds, config.seed)
    stacker = fit_stacker(x_dev, y_dev, config.seed)
    stacker.save(out / "stacker.json")
    probe_probs = stacker.predict({"minilm": minilm_probe, "char": char.logits(probe_texts), **pretrained_probe})

    dev_sources = [r.source for r in dev_rows]
    report: dict[str, Any] = {
        "model": "text/2 hate head", "date": time.strftime("%Y-%m-%d"), "seed": config.seed,
        "config": config.to_json(), "data": {"files_sha256": fingerprint, "sources": describe(rows),
                                             "train_rows": len(train_rows), "held_out_rows": len(dev_rows),
                                             "held_out_by_source": describe(dev_rows)},
        "split": SPLIT_TEXT, "fine_tune": {k: v for k, v in lora_meta.items() if k != "key"},
        "stacker": stacker.to_json(),
        "held_out": {
            "overall": figures(y_dev, crossfit),
            "by_source": by_source(y_dev, crossfit, dev_sources),
            "by_kind": {kind: figures(y_dev[np.isin(dev_sources, members)], crossfit[np.isin(dev_sources, members)])
                        for kind, members in SOURCE_KINDS.items() if np.isin(dev_sources, members).any()},
            "components_auroc_by_source": {
                name: {src: auroc_only(y_dev[np.array(dev_sources) == src],
                                       values[np.array(dev_sources) == src], rounds=200)
                       for src in sorted(set(dev_sources))}
                for name, values in {"minilm_lora": minilm_dev, "char_model": char_dev,
                                     "hatesonar_hate": pretrained_dev["hatesonar_hate"],
                                     "stack": crossfit}.items()},
        },
        "functional_probe": {"note": "hand-written by deepscreen (ml/build/training/text_probes.py), "
                                     "not HateCheck; never trained on",
                             **figures(np.array(probe_labels), probe_probs),
                             "by_function": {kind: float(np.mean(probe_probs[np.array(probe_kinds) == kind]))
                                             for kind in sorted(set(probe_kinds))}},
    }
    if loso:
        report["leave_one_source_out"] = {
            "note": "char n-gram model refitted without the source, and hatesonar (pretrained, never saw "
                    "these sources); the LoRA MiniLM is not refitted per source (one CPU fine-tune takes "
                    "30-60 minutes on two shared cores)",
            "by_source": stage["loso"]}
    report["seconds"] = round(time.perf_counter() - started, 1)
    (out / "train_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


# Which sources stand nearest to the three held-out targets (HateCheck-style functional tests,
# real comments, meme captions have no stand-in here).
SOURCE_KINDS = {
    "functional_like": ("dynahate", "hatemoji_build"),
    "real_posts": ("mhs_kennedy2020", "hatexplain", "gab_hate_corpus", "civil_comments_toxic_spans",
                   "fox_news_gao2017", "mlma_en"),
    "implicit": ("toxigen",),
}

SPLIT_TEXT = ("held out by group: DynaHate's, MHS's and HateXplain's own test splits; Hatemoji perturbation "
              "pairs (extra.matched_id, joined transitively) kept together, 15 % of pairs held out; ToxiGen "
              "whole target groups held out (hash of the group, 20 %); other sources 15 % of rows by a "
              "seeded hash. The stacker is fitted on held-out rows only, and its figures are cross-fitted "
              "over 5 group folds of them.")

__all__ = ["TextTrainConfig", "asdict", "fine_tune_stage", "run_fine_tune_only", "split", "train"]
