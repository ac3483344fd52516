"""GET /v1/models: what the repository serves (manifests only; the web never loads a model)."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify

from core.settings import get_settings
from ml.manifest import ModelError
from ml.repository import ModelRepository
from web.auth import require

bp = Blueprint("models", __name__, url_prefix="/v1/models")
_cache: dict[str, object] = {"at": 0.0, "versions": {}}
CACHE_SECONDS = 5.0


def repository() -> ModelRepository:
    return ModelRepository(get_settings().model_repository)


def live_versions() -> dict[str, str]:
    """name → live version, re-read every few seconds so a new version is picked up without a restart."""
    now = time.monotonic()
    if now - float(_cache["at"]) > CACHE_SECONDS:  # type: ignore[arg-type]
        repo = repository()
        versions = {}
        for name in repo.names():
            try:
                versions[name] = repo.manifest(name).version
            except ModelError:
                continue
        _cache.update(at=now, versions=versions)
    return dict(_cache["versions"])  # type: ignore[call-overload]


@bp.get("")
@require("read")
def index():  # type: ignore[no-untyped-def]
    repo = repository()
    items = []
    for name in repo.names():
        try:
            manifest = repo.manifest(name)
        except ModelError:
            continue
        items.append({**manifest.summary(), "versions": repo.versions(name),
                      "default": name in get_settings().model_names})
    return jsonify({"items": items})
