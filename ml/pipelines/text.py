"""The ``text`` model: hate / offensive / profanity scores for short texts (backs ``POST /v1/text``).

Rule (thresholds from the manifest): the first of hate, offensive, profane whose score reaches its
threshold names the label, else ``clean``. An empty text (after control characters are removed) has
nothing to judge and gets ``empty`` with no score.

text/1 (no ``hate_encoder`` file): ``hate`` is hatesonar's P(hate) and ``score`` the largest harm score.
text/2 (a ``hate_encoder``, ``char_model`` and ``stacker``): ``hate`` is the trained, calibrated
P(hateful) of the stack (ml.text_hate) and ``score`` is that probability; offensive and profane are
the same pretrained scores as text/1, for callers that want them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ml.manifest import Manifest
from ml.pipelines.base import Pipeline
from ml.text_hate import HateHead
from ml.text_models import (
    EMBEDDING_MAX_TOKENS,
    HateSonarModel,
    ProfanityModel,
    TextBranch,
    TextEmbedder,
    clean_text,
    non_latin_share,
)
from ml.types import MediaItem, Outcome

HARM_LABELS = ("hate", "offensive", "profane")


def has_hate_head(manifest: Manifest) -> bool:
    """text/2 and meme/2 ship the trained hate stack; text/1 and meme/1 do not."""
    return all(manifest.has(role) for role in ("hate_encoder", "char_model", "stacker"))


def load_text_branch(pipeline: Pipeline, embed: bool = True) -> TextBranch:
    """The text models of a version (text or meme) with sessions picked by the pipeline's providers.

    With the hate stack the fine-tuned encoder is the embedder and is always loaded (it feeds the head).
    """
    manifest = pipeline.manifest
    sonar = HateSonarModel(pipeline.session("hatesonar")[0])
    profanity = ProfanityModel(pipeline.session("profanity")[0])
    embedder, head = None, None
    stacked = has_hate_head(manifest)
    if embed or stacked:
        session, precision = pipeline.session("hate_encoder" if stacked else "embedder")
        max_tokens = int(manifest.options.get("embedding_max_tokens", EMBEDDING_MAX_TOKENS))
        embedder = TextEmbedder(session, manifest.path("tokenizer"), max_tokens=max_tokens, precision=precision)
    if stacked:
        head = HateHead.load(manifest.path("char_model"), manifest.path("stacker"))
    return TextBranch(sonar, profanity, embedder, head)


class TextPipeline(Pipeline):
    def __init__(self, manifest: Manifest, providers: list[str], threads: int = 1) -> None:
        super().__init__(manifest, providers, threads)
        self.branch = load_text_branch(self)
        self.thresholds = {label: float(manifest.thresholds.get(label, default))
                           for label, default in (("hate", 0.5), ("offensive", 0.7), ("profane", 0.8))}
        self.max_chars = int(manifest.options.get("max_chars", 10_000))
        self.non_latin_warning = float(manifest.options.get("non_latin_warning", 0.5))
        self.prototypes: list[str] = list(manifest.options.get("hate_prototypes", []))
        self._prototype_vectors = (self.branch.embedder.predict(self.prototypes)
                                   if self.prototypes and self.branch.embedder is not None else None)

    def predict(self, items: list[MediaItem]) -> list[Outcome]:
        return self.predict_texts([item.text or "" for item in items])

    def predict_texts(self, texts: list[str]) -> list[Outcome]:
        """One Outcome per text; one call per model for the whole batch."""
        prepared: list[tuple[str, dict[str, Any]]] = []
        for raw in texts:
            text, controls = clean_text(raw)
            cut = len(text) > self.max_chars
            text = text[: self.max_chars]
            prepared.append((text, {"characters": len(raw), "control_chars_replaced": controls,
                                    "truncated_to_chars": self.max_chars if cut else None}))
        live = [i for i, (text, _) in enumerate(prepared) if text.strip()]
        scores = self.branch.score([prepared[i][0] for i in live])
        outcomes: list[Outcome] = [Outcome(label="empty", score=None, evidence=prepared[i][1])
                                   for i in range(len(prepared))]
        similarity = None
        if scores.embeddings is not None and self._prototype_vectors is not None and live:
            similarity = scores.embeddings.vectors @ self._prototype_vectors.T
        for row, index in enumerate(live):
            text, evidence = prepared[index]
            stacked = scores.calibrated_hate is not None
            hate = float(scores.calibrated_hate[row]) if scores.calibrated_hate is not None else float(scores.hate[row])
            harm = {"hate": hate, "offensive": float(scores.offensive[row]), "profane": float(scores.profane[row])}
            label = next((name for name in HARM_LABELS if harm[name] >= self.thresholds[name]), "clean")
            if stacked:  # P(none of the three), taking them as independent
                clean = (1.0 - hate) * (1.0 - harm["offensive"]) * (1.0 - harm["profane"])
            else:
                clean = float(scores.neither[row] * (1.0 - scores.profane[row]))
            evidence.update(self._evidence(text, scores, row, similarity))
            outcomes[index] = Outcome(label=label, score=hate if stacked else max(harm.values()),
                                      scores={**harm, "clean": clean}, evidence=evidence)
        return outcomes

    def _evidence(self, text: str, scores: Any, row: int, similarity: np.ndarray | None) -> dict[str, Any]:
        evidence: dict[str, Any] = {
            "models": {
                "hatesonar": {"hate": float(scores.hate[row]), "offensive": float(scores.offensive[row]),
                              "neither": float(scores.neither[row])},
                "profanity": {"profane": float(scores.profane[row])},
            },
            "thresholds": dict(self.thresholds),
            "rule": "first of hate, offensive, profane at or above its threshold, else clean",
        }
        if scores.hate_parts is not None and scores.calibrated_hate is not None:
            evidence["models"]["hate_stack"] = {
                "p_hateful": float(scores.calibrated_hate[row]),
                "inputs": {name: round(float(values[row]), 4) for name, values in scores.hate_parts.items()},
                "note": "calibrated logistic stack of the fine-tuned MiniLM logit, the char n-gram logit and "
                        "the hatesonar / profanity scores; trained by deepscreen (see the model card)",
            }
        share = non_latin_share(text)
        evidence["non_latin_letter_share"] = round(share, 3)
        if share >= self.non_latin_warning:
            evidence["language_warning"] = ("mostly non-Latin letters: the hatesonar and profanity models "
                                            "know only English words, so their scores say little here")
        embedder = self.branch.embedder
        if scores.embeddings is not None and embedder is not None:
            emb = scores.embeddings
            info: dict[str, Any] = {"tokens": emb.tokens[row], "max_tokens": embedder.max_tokens,
                                    "truncated": emb.truncated[row], "precision": embedder.precision}
            if emb.truncated[row]:
                info["note"] = f"embedding read only the first {embedder.max_tokens} tokens"
            if similarity is not None:
                best = int(np.argmax(similarity[row]))
                info["nearest_hate_prototype"] = {"text": self.prototypes[best],
                                                  "cosine": float(similarity[row, best]),
                                                  "note": "uncalibrated evidence; not used in the label"}
            evidence["embedding"] = info
        return evidence

