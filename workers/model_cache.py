"""Pipelines loaded once per worker process (after fork), keyed by model name and version."""

from __future__ import annotations

import logging
import threading

from core.settings import get_settings
from ml.pipelines import Pipeline
from ml.repository import ModelRepository
from ml.runtime import choose_providers

log = logging.getLogger(__name__)
_pipelines: dict[tuple[str, str], Pipeline] = {}
_lock = threading.Lock()


def repository() -> ModelRepository:
    return ModelRepository(get_settings().model_repository)


def get_pipeline(name: str, version: str | None = None) -> Pipeline:
    """The live (newest) version unless one is named; loads and verifies on first use."""
    repo = repository()
    manifest = repo.manifest(name, version)
    key = (manifest.name, manifest.version)
    with _lock:
        if key not in _pipelines:
            settings = get_settings()
            providers = choose_providers(settings.onnx_providers)
            _pipelines[key] = repo.load(name, providers, settings.onnx_intra_op_threads, manifest.version)
            log.info("loaded model %s/%s on %s", name, manifest.version, providers[0])
        return _pipelines[key]


def preload(names: list[str]) -> None:
    """Load the default models at process start so the first job does not pay for it."""
    for name in names:
        try:
            get_pipeline(name)
        except Exception as exc:  # a broken model must not stop the worker; its jobs fail with a code
            log.error("cannot preload model %s: %s", name, exc)


def clear() -> None:
    with _lock:
        _pipelines.clear()
