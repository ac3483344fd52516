"""Two versions of a model on the same jobs: how often they agree, which labels flip, how scores move
(`deepscreen models compare NAME A B`; shadow runs and reprocessing feed it)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import aliased

from core.db import session_scope
from core.models import Result


def compare(name: str, a: str, b: str, limit: int = 100_000) -> dict[str, Any]:
    ra, rb = aliased(Result), aliased(Result)
    query = (select(ra.label, rb.label, ra.score, rb.score)
             .join(rb, (rb.job_id == ra.job_id) & (rb.model == ra.model))
             .where(ra.model == name, ra.model_version == a, rb.model_version == b).limit(limit))
    with session_scope() as session:
        rows = session.execute(query).all()
    flips: dict[str, int] = {}
    deltas = []
    for label_a, label_b, score_a, score_b in rows:
        if label_a != label_b:
            flips[f"{label_a}->{label_b}"] = flips.get(f"{label_a}->{label_b}", 0) + 1
        if score_a is not None and score_b is not None:
            deltas.append(score_b - score_a)
    deltas.sort()

    def quantile(q: float) -> float | None:
        return round(deltas[min(len(deltas) - 1, int(q * len(deltas)))], 4) if deltas else None

    return {"model": name, "a": a, "b": b, "jobs": len(rows),
            "agreement": round(1 - sum(flips.values()) / len(rows), 4) if rows else None,
            "flips": flips, "score_delta_quantiles": {str(q): quantile(q) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}}
