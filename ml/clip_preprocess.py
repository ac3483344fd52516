"""CLIP's image preprocessing, shared by every model that runs the CLIP image tower (synthetic, meme)."""

from __future__ import annotations

import numpy as np
from PIL import Image

SIZE = 224
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32).reshape(3, 1, 1)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32).reshape(3, 1, 1)


def preprocess(frame: np.ndarray, size: int = SIZE) -> np.ndarray:
    """RGB uint8 HxWx3 → float32 3x224x224: shortest side to 224 (bicubic), centre crop, CLIP mean/std."""
    img = Image.fromarray(frame).convert("RGB")
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    resized = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    crop = resized.crop((left, top, left + size, top + size))
    x = np.asarray(crop, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return ((x - CLIP_MEAN) / CLIP_STD).astype(np.float32)
