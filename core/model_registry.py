"""Which model versions exist and which one is live: the database decides, not the newest folder.

Versions found in the model repository are registered as ``candidate`` (``sync``); the first version
registered for a model with no live version becomes live, so a fresh install serves what it built.
After that, only ``promote`` changes what is live. Every change is recorded with who made it.
Reads are cached for a few seconds per process, so web and workers follow a promotion without a
restart.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.db import session_scope
from core.lifecycle_models import ModelVersion, ModelVersionChange, VersionState
from core.models import utcnow
from ml.manifest import MANIFEST, sha256_file
from ml.repository import ModelRepository

CACHE_SECONDS = 3.0


class RegistryError(ValueError):
    """A version or state change that cannot be made (unknown version, a live version retired …)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Serving:
    """What a model serves now: its live version and the shadows beside it (version → sample share)."""

    live: str | None
    shadows: dict[str, float]


_cache: dict[str, Any] = {"at": 0.0, "serving": {}}
_lock = threading.Lock()


def forget() -> None:
    _cache.update(at=0.0, serving={})


def sync(repo: ModelRepository, by: str = "system") -> list[tuple[str, str]]:
    """Register every version in ``repo`` that the database does not know. Returns the new ones."""
    added: list[tuple[str, str]] = []
    with session_scope() as session:
        known = {(m.name, m.version): m for m in session.scalars(select(ModelVersion))}
        live = {m.name for m in known.values() if m.state == VersionState.LIVE}
        for name in repo.names():
            for version in repo.versions(name):
                if (name, version) in known:
                    continue
                digest = sha256_file(repo.root / name / version / MANIFEST)
                session.add(ModelVersion(name=name, version=version, manifest_sha256=digest,
                                         state=VersionState.CANDIDATE, changed_by=by))
                session.add(ModelVersionChange(name=name, version=version, from_state=None,
                                               to_state=VersionState.CANDIDATE, by=by))
                added.append((name, version))
            newest = repo.versions(name)[-1] if repo.versions(name) else None
            if name not in live and newest is not None:
                session.flush()
                _set(session, name, newest, VersionState.LIVE, by)
                live.add(name)
    _cache.update(at=0.0)
    return added


def _set(session: Any, name: str, version: str, state: str, by: str, sample: float = 0.0) -> str | None:
    row = session.get(ModelVersion, (name, version))
    if row is None:
        raise RegistryError("unknown_version", f"no version {name}@{version} is registered")
    before = row.state
    now = utcnow()
    if state == VersionState.LIVE:
        for other in session.scalars(select(ModelVersion).where(
                ModelVersion.name == name, ModelVersion.state == VersionState.LIVE, ModelVersion.version != version)):
            other.state, other.changed_by, other.changed_at = VersionState.RETIRED, by, now
            session.add(ModelVersionChange(name=name, version=other.version, from_state=VersionState.LIVE,
                                           to_state=VersionState.RETIRED, by=by))
        row.promoted_at = now
    elif before == VersionState.LIVE:
        raise RegistryError("live_version", f"{name}@{version} is live: promote another version first")
    row.state, row.changed_by, row.changed_at = state, by, now
    row.shadow_sample = sample if state == VersionState.SHADOW else 0.0
    session.add(ModelVersionChange(name=name, version=version, from_state=before, to_state=state, by=by))
    return before


def change(name: str, version: str, state: str, by: str, sample: float = 0.0) -> dict[str, Any]:
    """Move a version to ``state`` (promote = live: the previous live one is retired)."""
    if state not in set(VersionState):
        raise RegistryError("bad_state", f"state must be one of {', '.join(VersionState)}")
    if state == VersionState.SHADOW and not 0.0 < sample <= 1.0:
        raise RegistryError("bad_sample", "a shadow's sample must be in (0, 1]")
    with session_scope() as session:
        before = _set(session, name, version, state, by, sample)
        previous_live = None
        if state == VersionState.LIVE:
            previous_live = session.scalar(
                select(ModelVersionChange.version).where(
                    ModelVersionChange.name == name, ModelVersionChange.to_state == VersionState.RETIRED,
                    ModelVersionChange.from_state == VersionState.LIVE)
                .order_by(ModelVersionChange.id.desc()).limit(1))
    forget()
    return {"name": name, "version": version, "from": before, "to": state, "by": by,
            "previous_live": previous_live if state == VersionState.LIVE else None}


def serving(repo: ModelRepository | None = None) -> dict[str, Serving]:
    """name → live version and shadows, cached for CACHE_SECONDS. With ``repo``, versions it holds
    that the database does not know yet are registered first (so whoever sees a new build first —
    web, worker or CLI — registers it, and a fresh install serves what it built)."""
    now = time.monotonic()
    with _lock:
        if now - _cache["at"] > CACHE_SECONDS:
            out: dict[str, Serving] = {}
            if repo is not None and _unregistered(repo):
                with contextlib.suppress(IntegrityError):  # another process registered them just now
                    sync(repo)
            with session_scope() as session:
                for row in session.scalars(select(ModelVersion).where(
                        ModelVersion.state.in_([VersionState.LIVE, VersionState.SHADOW]))):
                    current = out.get(row.name, Serving(None, {}))
                    if row.state == VersionState.LIVE:
                        current = Serving(row.version, current.shadows)
                    else:
                        current = Serving(current.live, {**current.shadows, row.version: row.shadow_sample})
                    out[row.name] = current
            _cache.update(at=now, serving=out)
        return dict(_cache["serving"])


def live_versions(repo: ModelRepository | None = None) -> dict[str, str]:
    return {name: s.live for name, s in serving(repo).items() if s.live}


def _unregistered(repo: ModelRepository) -> bool:
    found = {(name, version) for name in repo.names() for version in repo.versions(name)}
    with session_scope() as session:
        known = {(name, version) for name, version in session.execute(select(ModelVersion.name, ModelVersion.version))}
    return bool(found - known)


def versions(name: str | None = None) -> list[dict[str, Any]]:
    with session_scope() as session:
        query = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)
        if name is not None:
            query = query.where(ModelVersion.name == name)
        return [{"name": r.name, "version": r.version, "state": r.state, "shadow_sample": r.shadow_sample,
                 "manifest_sha256": r.manifest_sha256, "changed_by": r.changed_by,
                 "changed_at": r.changed_at.isoformat() if r.changed_at else None,
                 "promoted_at": r.promoted_at.isoformat() if r.promoted_at else None}
                for r in session.scalars(query)]


def history(name: str) -> list[dict[str, Any]]:
    with session_scope() as session:
        rows = session.scalars(select(ModelVersionChange).where(ModelVersionChange.name == name)
                               .order_by(ModelVersionChange.id))
        return [{"version": r.version, "from": r.from_state, "to": r.to_state, "by": r.by, "at": r.at.isoformat()}
                for r in rows]
