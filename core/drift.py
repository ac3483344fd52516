"""Drift of a live model version: the population stability index (PSI) of its scores over a sliding
window against the window right after it was promoted.

PSI = sum over score bins of (p_now - p_base) * ln(p_now / p_base), on ten equal-width bins of [0, 1]
with a small floor so empty bins stay finite. Rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25
a shift worth a look (the alert in deploy/prometheus/alerts.yml).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from core.db import session_scope
from core.lifecycle_models import ModelVersion, VersionState
from core.models import Result, utcnow

BINS = 10
FLOOR = 1e-4


def histogram(scores: list[float]) -> list[float]:
    counts = [0] * BINS
    for score in scores:
        counts[min(BINS - 1, max(0, int(score * BINS)))] += 1
    total = max(1, len(scores))
    return [c / total for c in counts]


def psi(baseline: list[float], current: list[float]) -> float:
    """PSI of two score samples (0 when either is empty: nothing to compare yet)."""
    if not baseline or not current:
        return 0.0
    return sum((max(c, FLOOR) - max(b, FLOOR)) * math.log(max(c, FLOOR) / max(b, FLOOR))
               for b, c in zip(histogram(baseline), histogram(current), strict=True))


def _scores(name: str, version: str, since: datetime, until: datetime | None, limit: int) -> list[float]:
    query = select(Result.score).where(Result.model == name, Result.model_version == version,
                                       Result.kind == "verdict", Result.score.is_not(None),
                                       Result.created_at >= since)
    if until is not None:
        query = query.where(Result.created_at < until)
    order = Result.created_at.asc() if until is not None else Result.created_at.desc()
    with session_scope() as session:
        return [float(s) for s in session.scalars(query.order_by(order).limit(limit)) if s is not None]


def live_drift(window: timedelta = timedelta(hours=24), baseline_size: int = 1000,
               current_size: int = 1000) -> list[dict[str, Any]]:
    """PSI per live version: the first ``baseline_size`` verdicts after its promotion vs the latest
    ``current_size`` within ``window``."""
    out = []
    with session_scope() as session:
        live = [(v.name, v.version, v.promoted_at or v.created_at) for v in
                session.scalars(select(ModelVersion).where(ModelVersion.state == VersionState.LIVE))]
    for name, version, promoted in live:
        promoted = promoted if promoted.tzinfo else promoted.replace(tzinfo=UTC)
        base = _scores(name, version, promoted, utcnow(), baseline_size)
        recent = _scores(name, version, max(promoted, utcnow() - window), None, current_size)
        out.append({"model": name, "version": version, "psi": round(psi(base, recent), 4),
                    "baseline_n": len(base), "current_n": len(recent)})
    return out
