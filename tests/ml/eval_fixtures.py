"""Small labelled sets for the evaluation tests, made here (nothing downloaded): media folders of
skimage photos, generated images and an OpenCV-written video; Hateful-Memes jsonl of Pillow-drawn
memes; csv / jsonl / jsonl.gz texts. And the model repository they run on."""

from __future__ import annotations

import csv
import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.ml.meme_fixtures import BENIGN_CAPTIONS, HATEFUL_CAPTIONS, built_repository, write_meme_dataset

TEXT_ROWS = (
    [{"text": t, "label": 1, "source": "hand", "extra": {"type": "threat" if "die" in t or "kill" in t else "slur"}}
     for t in HATEFUL_CAPTIONS]
    + [{"text": t, "label": 0, "source": "hand", "extra": {"type": "none"}} for t in BENIGN_CAPTIONS]
    + [{"text": "I hate all of you filthy vermin, you should all die", "label": 1, "source": "forum",
        "extra": {"type": "threat"}},
       {"text": "those people are animals and should be exterminated", "label": 1, "source": "forum",
        "extra": {"type": "dehumanising"}},
       {"text": "the garden looks great after the rain", "label": 0, "source": "forum", "extra": {"type": "none"}},
       {"text": "thanks for the help with my homework", "label": 0, "source": "forum", "extra": {"type": "none"}},
       {"text": "", "label": 0, "source": "forum", "extra": {"type": "none"}}]  # the model declines it: empty
)


def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nsfw, text and meme: the built repository `make test` made (TEST_MODEL_REPOSITORY), else built here."""
    prebuilt = os.environ.get("TEST_MODEL_REPOSITORY")
    if prebuilt and all((Path(prebuilt) / n).is_dir() for n in ("nsfw", "text", "meme")):
        return Path(prebuilt)
    from ml.build.builders.nsfw import build

    root = built_repository(tmp_path_factory, ("text", "meme"))
    build(root)
    return root


def _photos() -> list[np.ndarray]:
    from skimage import data

    return [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), np.dstack([data.camera()] * 3)]


def write_media_folders(root: Path, grouped: bool = False, zero_one: bool = False) -> Path:
    """Negatives: skimage photos (one a real face) and a short video; positives: noisy generated images
    under two sub-folders; one corrupt file that must be counted as undecodable.

    ``grouped``: ``root/<group>/real|fake/`` instead of ``root/real|fake/<group>/``; ``zero_one``: 0/ and 1/.
    """
    import cv2

    rng = np.random.default_rng(4)
    negative, positive = ("0", "1") if zero_one else ("real", "fake")

    def folder(label: str, group: str) -> Path:
        path = root / group / label if grouped else root / label / group
        path.mkdir(parents=True, exist_ok=True)
        return path

    for i, photo in enumerate(_photos()):
        Image.fromarray(photo).resize((160, 120)).save(folder(negative, "photos" if i % 2 else "skimage") / f"{i}.jpg")
    for i in range(4):
        pixels = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).resize((160, 120)).save(folder(positive, "noise" if i % 2 else "skimage") / f"{i}.png")
    (folder(positive, "noise") / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    video = folder(negative, "photos") / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for _ in range(20):
        writer.write((rng.random((64, 96, 3)) * 255).astype(np.uint8))
    writer.release()
    return root


def write_memes(root: Path, count: int = 12) -> Path:
    """A Hateful-Memes-layout jsonl (captions supplied, so no OCR runs) with a ``source`` column added."""
    write_meme_dataset(root, count=count, dev_share=0.0)
    path = root / "train.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**row, "source": "a" if i % 3 else "b"}) + "\n" for i, row in enumerate(rows)))
    return path


def write_texts(path: Path) -> Path:
    """TEXT_ROWS as .csv (flat columns), .jsonl or .jsonl.gz (nested ``extra``), by the path's suffix."""
    if path.suffix == ".csv":
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, ["text", "label", "source", "type"])
            writer.writeheader()
            for row in TEXT_ROWS:
                writer.writerow({"text": row["text"], "label": row["label"], "source": row["source"],
                                 "type": row["extra"]["type"]})  # type: ignore[index]
        return path
    lines = "".join(json.dumps(row) + "\n" for row in TEXT_ROWS)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(lines)
    else:
        path.write_text(lines)
    return path
