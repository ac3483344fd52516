"""Labelled evaluation sets: find the layout of a path, read its items, decode media.

Three layouts (label 1 is always the positive class):

- **folders** of images / videos: ``real/`` + ``fake/`` (also ``original/`` + ``manipulated/``) or
  ``0/`` + ``1/``, either directly under the path or one level down (``PATH/<group>/real/`` …). The
  column ``folder`` holds the top-level folder that groups items: the ``<group>`` folder in the second
  form, the first sub-folder under ``real/`` / ``fake/`` in the first (``(none)`` for files there).
- **memes**: a Hateful-Memes ``.jsonl`` (``{id, img, text, label}``, ``img`` relative to the file's folder).
- **texts**: ``.csv``, ``.jsonl`` or ``.jsonl.gz`` (also ``.csv.gz``) rows with ``text`` and ``label``.

Every field of a jsonl / csv row is a column for ``--group-by`` (nested fields as ``extra.type``).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml.image_decode import decode_image
from ml.types import MediaError, MediaItem

IMAGE_EXT = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".gif": "gif", ".webp": "webp", ".bmp": "bmp"}
VIDEO_EXT = {".mp4": "mp4", ".mov": "mov", ".avi": "avi", ".webm": "webm", ".mkv": "mkv"}
CLASS_DIRS = {"real": 0, "original": 0, "0": 0, "fake": 1, "manipulated": 1, "1": 1}
TEXT_SUFFIXES = (".csv", ".csv.gz", ".jsonl", ".jsonl.gz")
NO_GROUP = "(none)"


class DatasetError(ValueError):
    """The path is not a labelled set this tool can read; the message says what was expected."""


@dataclass
class Sample:
    label: int  # 1 = positive (fake / hateful / nsfw …), 0 = negative
    path: Path | None = None  # the media file (folders, memes); None for a text row
    text: str | None = None
    ref: str = ""  # where the item came from: a relative path, or file:line
    fields: dict[str, Any] = field(default_factory=dict)  # the row's columns (or {"folder": …})


@dataclass
class Dataset:
    path: Path
    layout: str  # "folders" | "memes" | "texts"
    samples: list[Sample]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def positives(self) -> int:
        return sum(s.label for s in self.samples)

    def describe(self) -> str:
        """The default description: the path's name, the layout and the class counts."""
        n = len(self.samples)
        return f"{self.name} ({self.layout}: {n} items, {self.positives} positive, {n - self.positives} negative)"

    def columns(self) -> list[str]:
        found: set[str] = set()
        for sample in self.samples[:1000]:
            found.update(_flat_keys(sample.fields))
        return sorted(found)

    def limit(self, count: int, seed: int) -> Dataset:
        """A seeded random subset of ``count`` items in their original order (files are often sorted by
        class or source, so the first N would not be a sample of the set)."""
        if count <= 0 or count >= len(self.samples):
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self.samples), count, replace=False))
        return Dataset(self.path, self.layout, [self.samples[int(i)] for i in keep])


def column_value(fields: dict[str, Any], column: str) -> str:
    """The value of ``column`` for ``--group-by`` (dots reach into nested objects); ``(none)`` if absent."""
    value: Any = fields
    for part in column.split("."):
        if not isinstance(value, dict) or part not in value:
            return NO_GROUP
        value = value[part]
    if value is None or value == "":
        return NO_GROUP
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _flat_keys(fields: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in fields.items():
        yield prefix + key
        if isinstance(value, dict):
            yield from _flat_keys(value, f"{prefix}{key}.")


# ---- layout detection --------------------------------------------------------------------------

def load_dataset(path: Path) -> Dataset:
    """Read ``path`` in whichever layout it has; DatasetError names the layouts when it has none."""
    if path.is_file():
        name = path.name.lower()
        if not name.endswith(TEXT_SUFFIXES):
            raise DatasetError(f"{path}: a data file must be .csv, .jsonl or .jsonl.gz "
                               f"(got {path.suffix or 'no suffix'})")
        rows = list(_read_rows(path))
        if not rows:
            raise DatasetError(f"{path} holds no rows")
        if "img" in rows[0][1]:
            return Dataset(path, "memes", [_meme_sample(path, line, row) for line, row in rows])
        return Dataset(path, "texts", [_text_sample(path, line, row) for line, row in rows])
    if path.is_dir():
        return Dataset(path, "folders", _folder_samples(path))
    raise DatasetError(f"{path} does not exist")


def _label(value: Any, where: str) -> int:
    """0 / 1 as an int, a float, a bool or a string of one; anything else is refused with its place."""
    if isinstance(value, bool):
        return int(value)
    try:
        number = float(str(value).strip())
    except ValueError:
        number = -1.0
    if number not in (0.0, 1.0):
        raise DatasetError(f"{where}: label must be 0 or 1 (1 = positive), got {value!r}")
    return int(number)


def _read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for a csv or jsonl file, gzip-compressed or not."""
    name = path.name.lower()
    with (gzip.open(path, "rb") if name.endswith(".gz") else path.open("rb")) as raw, \
            io.TextIOWrapper(raw, encoding="utf-8", newline="") as fh:
        if name.endswith((".csv", ".csv.gz")):
            reader = csv.DictReader(fh)
            missing = {"text", "label"} - set(reader.fieldnames or [])
            if missing:
                raise DatasetError(f"{path}: the csv header lacks {sorted(missing)} (found {reader.fieldnames})")
            for row in reader:
                yield reader.line_num, dict(row)
            return
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{line_no} is not JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{line_no} is not a JSON object")
            yield line_no, row


def _text_sample(path: Path, line: int, row: dict[str, Any]) -> Sample:
    where = f"{path.name}:{line}"
    if "label" not in row:
        raise DatasetError(f"{where} has no label (unlabelled rows cannot be scored)")
    if "text" not in row:
        raise DatasetError(f"{where} has no text field (text files need text and label)")
    text = row["text"]
    return Sample(_label(row["label"], where), None, "" if text is None else str(text), where, row)


def _meme_sample(path: Path, line: int, row: dict[str, Any]) -> Sample:
    where = f"{path.name}:{line}"
    if "label" not in row:
        raise DatasetError(f"{where} has no label (unlabelled test splits cannot be scored)")
    text = row.get("text")
    return Sample(_label(row["label"], where), path.parent / str(row["img"]), None if text is None else str(text),
                  str(row["img"]), row)


def _media_files(folder: Path) -> list[Path]:
    return [f for f in sorted(folder.rglob("*")) if f.is_file() and f.suffix.lower() in IMAGE_EXT | VIDEO_EXT]


def _class_folders(path: Path) -> dict[str, int]:
    return {p.name: CLASS_DIRS[p.name] for p in path.iterdir() if p.is_dir() and p.name in CLASS_DIRS}


def _folder_samples(path: Path) -> list[Sample]:
    classes = _class_folders(path)
    samples: list[Sample] = []
    if classes:
        for name, label in sorted(classes.items()):
            for f in _media_files(path / name):
                rel = f.relative_to(path / name)
                group = rel.parts[0] if len(rel.parts) > 1 else NO_GROUP
                samples.append(Sample(label, f, None, str(f.relative_to(path)), {"folder": group}))
    else:  # PATH/<group>/real/ …: the top-level folder is the group
        for top in sorted(p for p in path.iterdir() if p.is_dir()):
            for name, label in sorted(_class_folders(top).items()):
                samples += [Sample(label, f, None, str(f.relative_to(path)), {"folder": top.name})
                            for f in _media_files(top / name)]
    if not samples:
        hint = " (for a Hateful Memes set pass its .jsonl file)" if any(path.glob("*.jsonl")) else ""
        raise DatasetError(
            f"{path} holds no images or videos under real/ + fake/ or 0/ + 1/ (directly or one folder down){hint}; "
            f"text sets are .csv / .jsonl / .jsonl.gz files with text and label")
    return samples


# ---- decoding ----------------------------------------------------------------------------------

def decode_sample(sample: Sample, max_pixels: int = 40_000_000, max_frames: int = 16,
                  max_seconds: float = 600.0) -> MediaItem:
    """The sample's media as the workers decode it (the same limits), with its caption attached."""
    if sample.path is None:
        raise MediaError("no_media", f"{sample.ref} has no media file")
    suffix = sample.path.suffix.lower()
    try:
        data = sample.path.read_bytes()
    except OSError as exc:
        raise MediaError("unreadable_file", str(exc)) from exc
    if suffix in VIDEO_EXT:
        try:
            from ml.video_decode import decode_video
        except ImportError as exc:
            raise MediaError("video_unsupported", "video decoding is not available here") from exc
        item = decode_video(data, VIDEO_EXT[suffix], max_seconds, max_frames)
    else:
        item = decode_image(data, max_pixels)
    item.text = sample.text
    return item
