"""The values that cross the ml boundary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class MediaError(ValueError):
    """The input cannot be screened (corrupt, too large, unsupported). Not retried: the job fails with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class MediaItem:
    """One decoded upload: RGB uint8 frames (one for an image), plus optional caller-supplied text."""

    kind: str  # "image" | "video"
    frames: list[np.ndarray]
    frame_indices: list[int] = field(default_factory=lambda: [0])
    fps: float | None = None
    duration: float | None = None
    text: str | None = None
    source_format: str = ""


@dataclass
class Outcome:
    """One model's verdict on one item.

    ``label`` is a class name from the manifest, or an explicit outcome such as ``no_face`` when the
    model had nothing to judge; ``score`` is then None rather than a guess.
    """

    label: str
    score: float | None
    scores: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
