"""Labelled hate / not-hate texts for ``deepscreen train text``: reading, grouping and a held-out split.

Any folder (or file) of ``.jsonl``, ``.jsonl.gz`` or ``.csv`` rows with ``text`` and ``label`` (1 =
hateful) works; ``source`` and ``group`` columns are optional (the source defaults to the name of the file's folder).

Why groups: rows that are near-copies of each other must land on the same side of a split, or the
held-out figures measure memory. Hatemoji's perturbation pairs share a group (``extra.matched_id``,
joined transitively); ToxiGen's statements are grouped by their target group, so whole target groups
are held out; where a source ships its own test split (DynaHate, MHS, HateXplain) that split is the
held-out part, because its authors kept perturbations and duplicates on one side.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEV_SHARE = 0.15
# Sources whose own held-out split we reuse: (field in ``extra`` or "source_id", values held out).
OWN_SPLITS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dynahate": ("orig_split", ("test",)),
    "mhs_kennedy2020": ("carrier_file", ("test_2000.csv",)),
    "hatexplain": ("carrier_split", ("test",)),
}


@dataclass
class TextRow:
    text: str
    label: int
    source: str
    group: str  # rows sharing (source, group) are always split together
    licence: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _open(path: Path) -> Iterator[dict[str, Any]]:
    name = path.name.lower()
    if name.endswith(".csv"):
        with path.open(newline="", encoding="utf-8") as fh:
            yield from csv.DictReader(fh)
        return
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def data_files(path: Path) -> list[Path]:
    """The data files in ``path`` (itself if it is a file), sorted for a stable order."""
    if path.is_file():
        return [path]
    found = [p for p in sorted(path.rglob("*")) if p.is_file()
             and p.name.lower().endswith((".jsonl", ".jsonl.gz", ".csv"))]
    if not found:
        raise ValueError(f"{path} holds no .jsonl, .jsonl.gz or .csv file")
    return found


class _Union:
    """Union-find over string ids, for perturbation pairs that chain (a~b, b~c → one group)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, key: str) -> str:
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def join(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _label(value: Any) -> int:
    label = int(float(value))
    if label not in (0, 1):
        raise ValueError(f"label must be 0 or 1, got {value!r}")
    return label


def read_rows(paths: list[Path]) -> list[TextRow]:
    """Every labelled row of every file under ``paths``; rows with empty text are skipped."""
    rows: list[TextRow] = []
    pairs = _Union()
    for root in paths:
        for path in data_files(root):
            default_source = path.parent.name or "data"  # a row without ``source``: its folder's name
            for raw in _open(path):
                text = str(raw.get("text") or "")
                if not text.strip() or raw.get("label") in (None, ""):
                    continue
                extra = raw.get("extra") or {}
                if isinstance(extra, str):
                    extra = json.loads(extra) if extra.startswith("{") else {}
                source = str(raw.get("source") or default_source)
                sid = str(raw.get("source_id") or len(rows))
                group = str(raw.get("group") or "")
                if not group and extra.get("matched_id") not in (None, ""):
                    pairs.join(f"{source}:{sid}", f"{source}:{extra['matched_id']}")
                    group = f"pair:{sid}"
                rows.append(TextRow(text=text, label=_label(raw["label"]), source=source,
                                    group=group or f"id:{sid}", licence=str(raw.get("licence") or ""),
                                    extra=extra))
    for row in rows:
        if row.group.startswith("pair:"):
            row.group = "pair:" + pairs.find(f"{row.source}:{row.group[5:]}")
    if not rows:
        raise ValueError("no labelled rows found")
    return rows


def _fraction(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_held_out(row: TextRow, seed: int = 0, share: float = DEV_SHARE) -> bool:
    """Whether ``row`` belongs to the held-out part: the source's own test split where it has one,
    else a seeded hash of (source, group), so a group is never split."""
    own = OWN_SPLITS.get(row.source)
    if own is not None and own[0] in row.extra:
        return str(row.extra[own[0]]) in own[1]
    if not row.group.startswith(("id:", "pair:")):  # a named target group (ToxiGen): hold out whole groups
        return _fraction(str(seed), row.source, "group", row.group) < max(share, 0.2)
    return _fraction(str(seed), row.source, row.group) < share


def group_folds(rows: list[TextRow], folds: int, seed: int = 0) -> list[int]:
    """A fold number per row, constant within a (source, group)."""
    return [int(_fraction(str(seed), "fold", r.source, r.group) * folds) for r in rows]


def describe(rows: list[TextRow]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        entry = out.setdefault(row.source, {"n": 0, "positives": 0})
        entry["n"] += 1
        entry["positives"] += row.label
    return dict(sorted(out.items()))


def data_fingerprint(paths: list[Path]) -> dict[str, str]:
    """sha256 of each data file, so a report names exactly what it was trained on."""
    out = {}
    for root in paths:
        for path in data_files(root):
            out[str(path.name if root.is_file() else path.relative_to(root.parent))] = hashlib.sha256(
                path.read_bytes()).hexdigest()
    return out
