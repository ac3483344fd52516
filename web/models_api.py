"""Models: what is served (GET /v1/models) and, for admins, moving versions between states.

The live version of each model is what the database says (core.model_registry); manifests give the
rest. The web never loads a model. A promotion starts a reprocessing run over stored uploads unless
REPROCESS_ON_PROMOTE is off.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from core import model_registry, reprocess
from core.lifecycle_models import VersionState
from core.model_registry import RegistryError
from core.settings import get_settings
from ml.manifest import ModelError
from ml.repository import ModelRepository
from web.auth import current_principal, require
from web.errors import ApiError
from web.queue import enqueue_reprocess

bp = Blueprint("models", __name__, url_prefix="/v1/models")
ACTIONS = {"promote": VersionState.LIVE, "shadow": VersionState.SHADOW, "retire": VersionState.RETIRED,
           "candidate": VersionState.CANDIDATE}


def repository() -> ModelRepository:
    return ModelRepository(get_settings().model_repository)


def live_versions() -> dict[str, str]:
    """name → live version (the database's word), re-read every few seconds: a promotion is followed
    without a restart; versions the repository holds but the database does not are registered."""
    return model_registry.live_versions(repository())


def _model_items() -> list[dict[str, Any]]:
    repo = repository()
    serving = model_registry.serving(repo)
    states: dict[str, list[dict[str, Any]]] = {}
    for row in model_registry.versions():
        states.setdefault(row["name"], []).append(row)
    items = []
    for name in repo.names():
        live = serving.get(name)
        try:
            manifest = repo.manifest(name, live.live if live and live.live else None)
        except ModelError:
            continue
        versions = []
        for row in states.get(name, []):
            try:
                version_manifest = repo.manifest(name, row["version"])
                extra = {"description": version_manifest.description, "validation": version_manifest.quality()}
            except ModelError:
                extra = {"description": "", "validation": None, "missing": True}
            versions.append({"version": row["version"], "state": row["state"], "shadow_sample": row["shadow_sample"],
                             "changed_by": row["changed_by"], "changed_at": row["changed_at"], **extra})
        items.append({**manifest.summary(), "live": bool(live and live.live == manifest.version),
                      "versions": versions, "default": name in get_settings().model_names})
    return items


@bp.get("")
@require("read")
def index():  # type: ignore[no-untyped-def]
    return jsonify({"items": _model_items()})


@bp.get("/<name>/history")
@require("admin")
def history(name: str):  # type: ignore[no-untyped-def]
    return jsonify({"name": name, "changes": model_registry.history(name)})


@bp.post("/<name>/versions/<version>/<action>")
@require("admin")
def change(name: str, version: str, action: str):  # type: ignore[no-untyped-def]
    if action not in ACTIONS:
        raise ApiError(404, "not_found", f"no action {action!r}; one of {', '.join(ACTIONS)}")
    body = request.get_json(silent=True) or {}
    sample = body.get("sample", 0.1) if action == "shadow" else 0.0
    if not isinstance(sample, (int, float)) or isinstance(sample, bool):
        raise ApiError(422, "bad_sample", "sample must be a number in (0, 1]")
    if (version not in repository().versions(name)):
        raise ApiError(404, "not_found", f"the model repository has no {name}@{version}")
    model_registry.sync(repository())  # registers a version built since the last look
    by = current_principal().subject
    try:
        changed = model_registry.change(name, version, ACTIONS[action], by, float(sample))
    except RegistryError as exc:
        raise ApiError(409 if exc.code == "live_version" else 422, exc.code, str(exc)) from exc
    run = None
    if action == "promote" and body.get("reprocess", get_settings().reprocess_on_promote):
        run = reprocess.start(name, version, by=by, trigger="promotion")
        enqueue_reprocess(run["id"])
    return jsonify({**changed, "reprocess_run": run})
