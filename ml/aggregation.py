"""From per-face scores to a per-frame score and one score per item.

Per frame: the *maximum* over its faces, because one swapped face makes the frame fake however many
real faces stand beside it. Per item: a rule over the frame scores.

``confident`` is the rule of the DFDC winner (Selim Seferbekov, 2020, ``confident_strategy`` in
selimsef/dfdc_deepfake_challenge ``kernel_utils.py``). Log-loss punished confident mistakes, and
swaps are often visible on only part of a clip, so:

1. if more than 11 scores exceed ``t`` (0.8) *and* they are more than ``len // 2.5`` of all scores,
   the item is confidently fake: the mean of those high scores;
2. else if more than 90 % of the scores are below 0.2, it is confidently real: the mean of those;
3. else the plain mean.

With fewer than 12 frames (e.g. an image) step 1 can never fire, and the rule falls back to 2 or 3.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RULES = ("mean", "max", "confident")


def confident_strategy(scores: Sequence[float], t: float = 0.8) -> float:
    """The DFDC winner's rule (see the module docstring)."""
    pred = np.asarray(scores, dtype=np.float64)
    if pred.size == 0:
        raise ValueError("no scores to aggregate")
    size = pred.size
    fakes = int(np.count_nonzero(pred > t))
    if fakes > size // 2.5 and fakes > 11:
        return float(pred[pred > t].mean())
    if np.count_nonzero(pred < 0.2) > 0.9 * size:
        return float(pred[pred < 0.2].mean())
    return float(pred.mean())


def aggregate(scores: Sequence[float], rule: str = "confident") -> float:
    """One score from many, by ``rule`` (``mean``, ``max`` or ``confident``)."""
    if len(scores) == 0:
        raise ValueError("no scores to aggregate")
    if rule == "mean":
        return float(np.mean(scores))
    if rule == "max":
        return float(np.max(scores))
    if rule == "confident":
        return confident_strategy(scores)
    raise ValueError(f"unknown aggregation rule {rule!r}; expected one of {RULES}")


def frame_scores(face_frames: Sequence[int], face_scores: Sequence[float]) -> dict[int, float]:
    """Per-frame score (max over the frame's faces), keyed by frame index, in frame order."""
    out: dict[int, float] = {}
    for frame, score in zip(face_frames, face_scores, strict=True):
        out[frame] = max(out.get(frame, 0.0), float(score))
    return dict(sorted(out.items()))
