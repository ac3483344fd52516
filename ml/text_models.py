"""The text branch: hate/offensive (hatesonar), profanity (alt-profanity-check), MiniLM sentence embedding.

All three run as ONNX (no torch, no scikit-learn at run time). The two TF-IDF graphs were rewritten at
build time (ml.build.builders.text) to drop their StringNormalizer node: ONNX Runtime builds that node with
the en_US.UTF-8 locale, which slim containers lack, and the session then refuses to load. Lower-casing
is done here with ``str.lower`` instead, which is exactly what scikit-learn did when the models were
trained, so the scores match the originals (checked at build time).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from onnxruntime import InferenceSession

from ml.text_hate import HateHead

EMBEDDING_MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length in sentence-transformers
_KEEP_CONTROLS = {"\t", "\n", "\r"}


def clean_text(text: str) -> tuple[str, int]:
    """Replace NUL and other control characters with spaces; returns the text and how many were replaced.

    Control characters carry no meaning for the models and NUL breaks some C string handling.
    """
    replaced = 0
    out = []
    for ch in text:
        if ch not in _KEEP_CONTROLS and unicodedata.category(ch) in ("Cc", "Cs"):
            out.append(" ")
            replaced += 1
        else:
            out.append(ch)
    return "".join(out), replaced


def non_latin_share(text: str) -> float:
    """Share of letters outside ASCII: the TF-IDF models only know English (ASCII) words."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for ch in letters if not ch.isascii()) / len(letters)


def _strings(texts: list[str]) -> np.ndarray:
    return np.array([t.lower() for t in texts], dtype=object)


class HateSonarModel:
    """Davidson et al. (2017) tweet classifier as shipped by hatesonar: P(hate, offensive, neither)."""

    LABELS = ("hate", "offensive", "neither")

    def __init__(self, session: InferenceSession) -> None:
        self.session = session
        self._input = session.get_inputs()[0].name

    def predict(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 3), np.float32)
        probs = self.session.run(["probabilities"], {self._input: _strings(texts)})[0]
        return np.asarray(probs, np.float32).reshape(len(texts), 3)


class ProfanityModel:
    """alt-profanity-check (TF-IDF + calibrated linear SVM) converted with skl2onnx: P(profane)."""

    def __init__(self, session: InferenceSession) -> None:
        self.session = session
        self._input = session.get_inputs()[0].name

    def predict(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0,), np.float32)
        probs = self.session.run(["probabilities"], {self._input: _strings(texts)})[0]
        return np.asarray(probs, np.float32).reshape(len(texts), 2)[:, 1]


@dataclass
class Embeddings:
    vectors: np.ndarray  # (N, 384), unit length
    tokens: list[int] = field(default_factory=list)  # tokens before truncation, incl. [CLS]/[SEP]
    truncated: list[bool] = field(default_factory=list)
    logits: np.ndarray | None = None  # (N,) hate logits when the graph has a head (text/2's hate encoder)


class TextEmbedder:
    """all-MiniLM-L6-v2 (mean pooling + L2 norm inside the ONNX graph); tokenised with ``tokenizers``.

    text/2's graph is the LoRA-fine-tuned MiniLM with its hate head: a second output, the hate logit.
    """

    def __init__(self, session: InferenceSession, tokenizer_path: Path,
                 max_tokens: int = EMBEDDING_MAX_TOKENS, batch_size: int = 32, precision: str = "fp32") -> None:
        from tokenizers import Tokenizer

        self.session = session
        self.precision = precision  # which variant the session runs (fp32 / int8), for the evidence
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest in the batch
        self._names = {i.name for i in session.get_inputs()}

    def encode(self, texts: list[str]) -> Embeddings:
        vectors, logits, tokens, truncated = [], [], [], []
        for start in range(0, len(texts), self.batch_size):
            encodings = self.tokenizer.encode_batch(texts[start:start + self.batch_size])
            feed = {
                "input_ids": np.array([e.ids for e in encodings], np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], np.int64),
            }
            feed = {k: v for k, v in feed.items() if k in self._names}
            outputs = self.session.run(None, feed)
            vectors.append(np.asarray(outputs[0], np.float32))
            if len(outputs) > 1:
                logits.append(np.asarray(outputs[1], np.float32).reshape(-1))
            for e in encodings:
                # Overflow pieces repeat [CLS]/[SEP] and may be padded: count only their real tokens.
                dropped = sum(int(sum(o.attention_mask)) - 2 for o in e.overflowing)
                tokens.append(int(sum(e.attention_mask)) + dropped)
                truncated.append(bool(e.overflowing))
        if not vectors:
            return Embeddings(np.zeros((0, 384), np.float32), logits=np.zeros(0, np.float32) if self.has_head else None)
        return Embeddings(np.concatenate(vectors), tokens, truncated, np.concatenate(logits) if logits else None)

    @property
    def has_head(self) -> bool:
        return len(self.session.get_outputs()) > 1

    def predict(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts).vectors


@dataclass
class TextScores:
    """Per-text branch outputs, aligned with the input list."""

    hate: np.ndarray
    offensive: np.ndarray
    neither: np.ndarray
    profane: np.ndarray
    embeddings: Embeddings | None = None
    calibrated_hate: np.ndarray | None = None  # text/2: the stacked, calibrated P(hateful)
    hate_parts: dict[str, np.ndarray] | None = None  # text/2: what the stacker read


class TextBranch:
    """The text models together; ``score`` runs each once per batch.

    With a ``head`` (text/2, meme/2) the embedder is the fine-tuned hate encoder and always runs: its
    logit, the char model and the two TF-IDF models feed the stacker, whose output is P(hateful).
    """

    def __init__(self, sonar: HateSonarModel, profanity: ProfanityModel, embedder: TextEmbedder | None,
                 head: HateHead | None = None) -> None:
        self.sonar = sonar
        self.profanity = profanity
        self.embedder = embedder
        self.head = head
        if head is not None and (embedder is None or not embedder.has_head):
            raise ValueError("the hate head needs the hate encoder (an embedder graph with a logit output)")

    def score(self, texts: list[str], embed: bool = True) -> TextScores:
        sonar = self.sonar.predict(texts)
        profane = self.profanity.predict(texts)
        run = self.embedder is not None and (embed or self.head is not None)
        embeddings = self.embedder.encode(texts) if run and self.embedder is not None else None
        scores = TextScores(hate=sonar[:, 0], offensive=sonar[:, 1], neither=sonar[:, 2], profane=profane,
                            embeddings=embeddings)
        if self.head is not None and embeddings is not None and embeddings.logits is not None:
            scores.calibrated_hate, scores.hate_parts = self.head.predict(texts, embeddings.logits, sonar, profane)
        return scores
