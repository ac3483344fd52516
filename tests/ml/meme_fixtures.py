"""Generated memes and model repositories for the meme / text / OCR tests (no downloaded data)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
)

HATEFUL_CAPTIONS = [
    "you people should all die", "i hate those stupid faggots", "kill all of them",
    "they are filthy animals", "go back home you dirty scum", "those bitches deserve nothing",
]
BENIGN_CAPTIONS = [
    "what a lovely afternoon", "my cat loves cardboard boxes", "when the code works offline",
    "monday morning coffee mood", "grandma baked cookies again", "weekend hiking with friends",
]


def meme_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A bold sans TTF (DejaVu, or matplotlib's copy); Pillow's default font scaled if neither exists."""
    candidates = list(FONT_CANDIDATES)
    try:
        import matplotlib

        candidates.append(str(Path(matplotlib.__file__).parent / "mpl-data/fonts/ttf/DejaVuSans-Bold.ttf"))
    except ImportError:
        pass
    for path in candidates:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def _background(size: tuple[int, int], seed: int) -> Image.Image:
    """A picture-like background: a colour gradient with a few shapes (not a flat fill)."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(30, 200, size=3)
    ramp = np.linspace(0.6, 1.2, h)[:, None, None]
    pixels = np.clip(np.broadcast_to(base, (h, w, 3)) * ramp, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = int(rng.integers(0, w - 60)), int(rng.integers(h // 4, 3 * h // 4 - 60))
        colour = tuple(int(c) for c in rng.integers(0, 255, size=3))
        draw.ellipse((x, y, x + int(rng.integers(30, 120)), y + int(rng.integers(30, 90))), fill=colour)
    return image


def draw_meme(top: str, bottom: str = "", size: tuple[int, int] = (512, 512), seed: int = 0) -> np.ndarray:
    """Big white upper-case caption with a black outline, top and bottom, Impact-style. RGB uint8."""
    image = _background(size, seed)
    draw = ImageDraw.Draw(image)
    for text, anchor_y, anchor in ((top, 12, "mt"), (bottom, size[1] - 12, "mb")):
        if not text:
            continue
        text = text.upper()
        font_size = 56
        while font_size > 16:
            font = meme_font(font_size)
            left, _, right, _ = draw.textbbox((0, 0), text, font=font, stroke_width=3)
            if right - left <= size[0] - 24:
                break
            font_size -= 4
        draw.text((size[0] // 2, anchor_y), text, font=font, fill="white", anchor=anchor,
                  stroke_width=3, stroke_fill="black")
    return np.asarray(image)


def write_meme_dataset(folder: Path, count: int = 40, dev_share: float = 0.3, seed: int = 0) -> Path:
    """A tiny Hateful-Memes-layout set whose labels follow the caption words (hateful vs benign lists)."""
    from ml.build.datasets.hateful_memes import write_record

    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        label = index % 2
        captions = HATEFUL_CAPTIONS if label else BENIGN_CAPTIONS
        text = captions[int(rng.integers(len(captions)))]
        name = f"img/{index:05d}.png"
        Image.fromarray(draw_meme(text, size=(256, 256), seed=seed * 1000 + index)).save(folder / name)
        rows.append((f"{index:05d}", name, text, label))
    order = rng.permutation(count)
    dev_count = round(count * dev_share)
    splits = {"dev": order[:dev_count], "train": order[dev_count:]}
    for split, indices in splits.items():
        with (folder / f"{split}.jsonl").open("w") as fh:
            for i in sorted(indices):
                write_record(fh, *rows[i])
    return folder


# builder name → the version folder it writes (text_v2 / meme_v2 are text/2 and meme/2)
VERSION_DIRS = {"text": "text/1", "meme": "meme/1", "text_v2": "text/2", "meme_v2": "meme/2"}


def built_repository(tmp_path_factory: pytest.TempPathFactory, names: tuple[str, ...] = ("text", "meme")) -> Path:
    """Build into one folder per test session; a builder returns the existing version when it is there,
    so test modules that each ask for it share one build."""
    from ml.build.builders import meme, meme_v2, text, text_v2

    prebuilt = os.environ.get("TEST_MODEL_REPOSITORY")  # `make test` builds the real repository once
    if prebuilt and all((Path(prebuilt) / VERSION_DIRS[name] / "manifest.json").is_file() for name in names):
        return Path(prebuilt)
    root = tmp_path_factory.getbasetemp() / "meme_text_repository"
    builders = {"text": text.build, "meme": meme.build, "text_v2": text_v2.build, "meme_v2": meme_v2.build}
    for name in names:
        builders[name](root, False)
    return root
