"""Pipelines loaded once per worker process (after fork), keyed by model name and version.

Which version serves is the database's word (core.model_registry). ``follow`` (run by the worker's
heartbeat thread) notices a promotion, loads and warms the new version, and only then flips the
model to it; a batch already running keeps the pipeline it started with. Shadow versions are loaded
beside the live one and run on their sample of live traffic.

Provider truth: what a loaded model reports is what its sessions got (``Pipeline.runtime``), and it
goes to the logs (loudly when CUDA was asked for and the CPU answered), the metrics, the worker's
heartbeat (so /ready shows it) and every result's evidence.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from core import model_registry
from core.settings import get_settings
from ml.manifest import ModelError
from ml.pipelines import Pipeline
from ml.repository import ModelRepository
from ml.runtime import CUDA, choose_providers
from ml.types import MediaItem
from workers import metrics

log = logging.getLogger(__name__)
_pipelines: dict[tuple[str, str], Pipeline] = {}
_active: dict[str, str] = {}  # name -> the version this process serves as live (flipped after loading)
_shadows: dict[str, dict[str, float]] = {}  # name -> loaded shadow versions and their sample share
_lock = threading.RLock()


def repository() -> ModelRepository:
    return ModelRepository(get_settings().model_repository)


def _live(name: str) -> str:
    try:
        serving = model_registry.serving(repository()).get(name)
    except Exception as exc:  # the database is down: keep serving what we serve
        raise ModelError("model_unavailable", f"cannot read which version of {name} is live: {exc}") from exc
    if serving is None or serving.live is None:
        raise ModelError("unknown_model", f"no live version of model {name!r}")
    return serving.live


def get_pipeline(name: str, version: str | None = None) -> Pipeline:
    """The version named, else the one this process serves as live (resolved and loaded on first use)."""
    with _lock:
        if version is None:
            version = _active.get(name) or _live(name)
            _active.setdefault(name, version)
        key = (name, version)
        if key not in _pipelines:
            _pipelines[key] = _load(repository(), name, version)
        return _pipelines[key]


def shadows(name: str) -> list[tuple[Pipeline, float]]:
    """Loaded shadow pipelines of ``name`` and the share of live traffic each sees."""
    with _lock:
        return [(_pipelines[(name, v)], share) for v, share in _shadows.get(name, {}).items()
                if (name, v) in _pipelines]


def follow() -> list[str]:
    """Follow promotions and shadows without a restart: load + warm first, flip after. Returns changes."""
    try:
        serving = model_registry.serving(repository())
    except Exception as exc:
        log.warning("cannot read the served versions: %s", exc)
        return []
    changes = []
    for name in list(_active):
        state = serving.get(name)
        if state is None or state.live is None:
            continue
        try:
            if state.live != _active[name]:
                pipeline = get_pipeline(name, state.live)
                _warm(pipeline)
                with _lock:
                    old, _active[name] = _active[name], state.live
                    dropped = _pipelines.pop((name, old), None) if old not in state.shadows else None
                if dropped is not None:  # a running batch keeps its own reference until it ends
                    runtime = dropped.runtime()
                    metrics.MODEL_INFO.labels(name, old, runtime["provider"], runtime["precision"],
                                              runtime["requested"]).set(0)
                changes.append(f"{name}: {old} -> {state.live}")
                log.warning("now serving %s@%s (was %s)", name, state.live, old)
            for version in state.shadows:
                get_pipeline(name, version)
            with _lock:
                _shadows[name] = dict(state.shadows)
        except ModelError as exc:
            log.error("cannot load %s for serving: %s", name, exc)
    return changes


def _warm(pipeline: Pipeline) -> None:
    """One tiny prediction, so the first real batch does not pay for lazy initialisation."""
    try:
        pipeline.predict([MediaItem(kind="image", frames=[np.full((64, 64, 3), 127, np.uint8)], text="warm up")])
    except Exception as exc:  # a model that cannot take a blank image still serves real ones
        log.info("warm-up of %s@%s: %s", pipeline.name, pipeline.version, exc)


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
    """name@version → role (live | shadow | pinned), provider, precision: for the heartbeat and /ready."""
    with _lock:
        items = list(_pipelines.items())
        active, shadow = dict(_active), {n: set(s) for n, s in _shadows.items()}
    out = {}
    for (name, version), p in items:
        role = "live" if active.get(name) == version else "shadow" if version in shadow.get(name, ()) else "pinned"
        out[f"{name}@{version}"] = {"role": role, **{k: v for k, v in p.runtime().items() if k != "sessions"}}
    return out


def preload(names: list[str]) -> None:
    """Load the default models at process start so the first job does not pay for it."""
    for name in names:
        try:
            get_pipeline(name)
        except Exception as exc:  # a broken model must not stop the worker; its jobs fail with a code
            log.error("cannot preload model %s: %s", name, exc)
    follow()


def clear() -> None:
    with _lock:
        _pipelines.clear()
        _active.clear()
        _shadows.clear()
