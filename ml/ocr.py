"""Text in images: RapidOCR (PP-OCR detection + recognition ONNX models, Apache-2.0).

RapidOCR downloads models only when no ``model_path`` is configured, so the engine is always given
explicit file paths: the copies inside a model version folder, or the ones bundled in the rapidocr
wheel. Building the engine opens three ONNX sessions, so it happens on first use, once per process.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Files shipped inside the rapidocr==3.10.0 wheel (rapidocr/models/).
BUNDLED = {
    "det": "PP-OCRv6_det_small.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "rec": "PP-OCRv6_rec_small.onnx",
}
# Detection input capped at 960 px on the long side (PaddleOCR's own default). rapidocr's default
# ("min" side ≥ 736) upscales small memes and costs about twice the time for the same words.
DEFAULT_SETTINGS: dict[str, Any] = {"det_limit_type": "max", "det_limit_side_len": 960, "use_cls": True,
                                    "min_confidence": 0.5}


@dataclass
class OcrResult:
    """The recognised text, lines joined in reading order, and each line with its box and confidence."""

    text: str
    lines: list[dict[str, Any]] = field(default_factory=list)


def bundled_model_paths() -> dict[str, Path]:
    """The OCR models inside the installed rapidocr wheel (found without importing it)."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or spec.origin is None:
        raise RuntimeError("rapidocr is not installed")
    folder = Path(spec.origin).parent / "models"
    paths = {key: folder / name for key, name in BUNDLED.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise RuntimeError(f"rapidocr wheel lacks its bundled models: {missing}")
    return paths


class OcrEngine:
    """One RapidOCR instance, built on first ``read`` with ``threads`` intra-op threads per session."""

    def __init__(self, paths: dict[str, Path] | None = None, threads: int = 1,
                 settings: dict[str, Any] | None = None) -> None:
        self.paths = paths or bundled_model_paths()
        self.threads = threads
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self._engine: Any = None
        self._lock = threading.Lock()

    def _build(self) -> Any:
        from rapidocr import RapidOCR  # heavy (cv2, omegaconf): imported only when OCR is needed

        use_cls = bool(self.settings["use_cls"]) and "cls" in self.paths
        params: dict[str, Any] = {
            "Global.log_level": "error",
            "Global.use_cls": use_cls,
            "Global.text_score": float(self.settings["min_confidence"]),
            "Det.model_path": str(self.paths["det"]),
            "Rec.model_path": str(self.paths["rec"]),
            "Det.limit_type": str(self.settings["det_limit_type"]),
            "Det.limit_side_len": int(self.settings["det_limit_side_len"]),
            "EngineConfig.onnxruntime.intra_op_num_threads": max(1, self.threads),
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        if use_cls:
            params["Cls.model_path"] = str(self.paths["cls"])
        return RapidOCR(params=params)

    def engine(self) -> Any:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._build()
        return self._engine

    def read(self, frame: np.ndarray) -> OcrResult:
        """OCR one RGB (or greyscale) uint8 frame. No text found gives ``OcrResult("", [])``."""
        if frame.ndim == 2:
            frame = np.stack([frame] * 3, axis=-1)
        if frame.ndim != 3 or frame.shape[2] not in (3, 4) or min(frame.shape[:2]) < 1:
            raise ValueError(f"expected an HxWx3 image, got shape {frame.shape}")
        # rapidocr treats arrays as OpenCV BGR.
        bgr = np.ascontiguousarray(frame[:, :, 2::-1]).astype(np.uint8, copy=False)
        output = self.engine()(bgr)
        texts = getattr(output, "txts", None)
        boxes = getattr(output, "boxes", None)
        scores = getattr(output, "scores", None)
        if not texts or boxes is None or scores is None:
            return OcrResult(text="", lines=[])
        lines: list[dict[str, Any]] = [
            {"text": str(text), "box": [[float(x), float(y)] for x, y in np.asarray(box).tolist()],
             "confidence": float(score)}
            for text, box, score in zip(texts, boxes, scores, strict=True) if str(text).strip()
        ]
        return OcrResult(text=" ".join(str(line["text"]) for line in lines), lines=lines)


_SHARED: dict[tuple[Any, ...], OcrEngine] = {}
_SHARED_LOCK = threading.Lock()


def shared_engine(paths: dict[str, Path] | None = None, threads: int = 1,
                  settings: dict[str, Any] | None = None) -> OcrEngine:
    """The process's engine for these files and settings (pipelines of several versions may share it)."""
    resolved = paths or bundled_model_paths()
    key = (tuple(sorted((k, str(v)) for k, v in resolved.items())), threads,
           tuple(sorted((settings or {}).items())))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = OcrEngine(resolved, threads, settings)
        return _SHARED[key]
