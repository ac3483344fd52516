"""Reader for the Hateful Memes layout (Kiela et al. 2020): ``img/``, ``train.jsonl``, ``dev.jsonl``.

Each JSONL line is ``{"id", "img", "label", "text"}`` with ``img`` relative to the data folder
(``img/01235.png``). Test splits have no ``label``; such records read as ``label=None``. The data set
itself is not shipped or downloaded: operators bring it under its own licence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import Image

SPLITS = ("train", "dev", "dev_seen", "dev_unseen", "test", "test_seen", "test_unseen")


@dataclass(frozen=True)
class MemeRecord:
    id: str
    image: Path
    text: str
    label: int | None

    def load_rgb(self, max_side: int = 1024) -> np.ndarray:
        """The image as RGB uint8, shrunk so its longer side is at most ``max_side`` (features use 224 px)."""
        with Image.open(self.image) as img:
            img.draft("RGB", (max_side, max_side))
            rgb = img.convert("RGB")
        if max(rgb.size) > max_side:
            rgb.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
        return np.asarray(rgb)


def read_split(data_dir: Path, split: str) -> list[MemeRecord]:
    """Records of ``<data_dir>/<split>.jsonl``; raises ValueError naming the line when one is malformed."""
    path = data_dir / f"{split}.jsonl"
    if not path.is_file():
        raise ValueError(f"{path} does not exist (expected the Hateful Memes layout)")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            label = raw.get("label")
            record = MemeRecord(id=str(raw["id"]), image=data_dir / str(raw["img"]), text=str(raw.get("text", "")),
                                label=None if label is None else int(label))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: not a meme record ({exc})") from exc
        if record.label not in (None, 0, 1):
            raise ValueError(f"{path}:{number}: label must be 0 or 1, got {record.label}")
        if not record.image.is_file():
            raise ValueError(f"{path}:{number}: image {record.image} is missing")
        records.append(record)
    return records


def write_record(handle: TextIO, record_id: str, image: str, text: str, label: int | None) -> None:
    """One JSONL line in the layout (used to make small test sets)."""
    row: dict[str, object] = {"id": record_id, "img": image, "text": text}
    if label is not None:
        row["label"] = label
    handle.write(json.dumps(row) + "\n")
