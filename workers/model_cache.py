"""Pipelines loaded once per worker process (after fork), keyed by model name and version.

Provider truth: what a loaded model reports is what its sessions got (``Pipeline.runtime``), and it
goes to the logs (loudly when CUDA was asked for and the CPU answered), the metrics, the worker's
heartbeat (so /ready shows it) and every result's evidence.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from core.settings import get_settings
from ml.pipelines import Pipeline
from ml.repository import ModelRepository
from ml.runtime import CUDA, choose_providers
from workers import metrics

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
            _pipelines[key] = _load(repo, name, manifest.version)
        return _pipelines[key]


def _load(repo: ModelRepository, name: str, version: str) -> Pipeline:
    settings = get_settings()
    providers = choose_providers(settings.onnx_providers)
    started = time.perf_counter()
    pipeline = repo.load(name, providers, settings.onnx_intra_op_threads, version)
    seconds = time.perf_counter() - started
    runtime = pipeline.runtime()
    asked_cuda = CUDA in [p.strip() for p in settings.onnx_providers.split(",")]
    fell_back = asked_cuda and runtime["provider"] != CUDA
    metrics.MODEL_LOAD_SECONDS.labels(name, version).set(seconds)
    metrics.MODEL_INFO.labels(name, version, runtime["provider"], runtime["precision"],
                              runtime["requested"]).set(1)
    metrics.CUDA_FELL_BACK.labels(name, version).set(1 if fell_back else 0)
    if fell_back:
        log.error("MODEL %s/%s RUNS ON %s although ONNX_PROVIDERS=%s asked for CUDA (sessions: %s)",
                  name, version, runtime["provider"], settings.onnx_providers, runtime.get("sessions"))
    log.info("loaded %s/%s in %.1f s on %s (%s)", name, version, seconds, runtime["provider"], runtime["precision"])
    return pipeline


def loaded() -> dict[str, dict[str, Any]]:
    """name@version → provider, precision, requested provider: for the heartbeat and /ready."""
    with _lock:
        items = list(_pipelines.items())
    return {f"{name}@{version}": {k: v for k, v in p.runtime().items() if k != "sessions"}
            for (name, version), p in items}


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
