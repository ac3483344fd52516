"""Screening a claimed batch: fetch and decode every job's media concurrently, run each model ONCE for
all the batch's items, and turn what happened into one Outcome per job.

Plain functions (no broker, no Celery) so tests and benchmarks call them directly. A job's own
problems stay its own: a corrupt file fails only that job, and a model that raises on a batch is
re-run item by item so only the item that breaks it is retried.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from core import logs
from core.job_queue import ClaimedJob, Outcome
from core.jobs import Verdict
from core.object_store import BlobMissing, ObjectStore, StorageUnavailable
from ml.decode import DecodeLimits, decode
from ml.manifest import ModelError
from ml.pipelines import Pipeline
from ml.types import MediaError, MediaItem
from workers import metrics

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A job with its decoded media, or the Outcome that already ends it (a fetch or decode failure)."""

    job: ClaimedJob
    item: MediaItem | None = None
    outcome: Outcome | None = None


@dataclass
class BatchTimer:
    stages: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float, model: str = "-") -> None:
        self.stages[f"{model}/{stage}"] = self.stages.get(f"{model}/{stage}", 0.0) + seconds

    def export(self) -> None:
        for key, seconds in self.stages.items():
            model, _, stage = key.partition("/")
            metrics.STAGE_SECONDS.labels(model, stage).observe(seconds)


def _prepare_one(job: ClaimedJob, store: ObjectStore, limits: DecodeLimits) -> tuple[Prepared, float, float]:
    if job.storage_key is None:
        return Prepared(job, outcome=Outcome(job, error=("media_missing", "the job has no stored media"))), 0, 0
    started = time.perf_counter()
    try:
        data = store.get(job.storage_key)
    except BlobMissing:
        return Prepared(job, outcome=Outcome(
            job, error=("media_missing", "the uploaded file is no longer in the object store"))), 0, 0
    except StorageUnavailable as exc:
        return Prepared(job, outcome=Outcome(job, error=("storage_unavailable", str(exc)), transient=True)), 0, 0
    fetched = time.perf_counter()
    try:
        item = decode(data, job.fmt, limits, job.text)
    except MediaError as exc:
        return Prepared(job, outcome=Outcome(job, error=(exc.code, exc.message))), fetched - started, 0
    return Prepared(job, item=item), fetched - started, time.perf_counter() - fetched


def prepare(jobs: list[ClaimedJob], store: ObjectStore, limits: DecodeLimits, pool: Executor,
            timer: BatchTimer) -> list[Prepared]:
    """Fetch and decode concurrently (object-store GETs and image decoding release the GIL)."""
    def one(job: ClaimedJob) -> tuple[Prepared, float, float]:
        with logs.job_context(job.id, job.request_id):
            log.debug("claimed job %s (attempt %d)", job.id, job.attempts)
            return _prepare_one(job, store, limits)

    results = list(pool.map(one, jobs))
    for _, fetch_s, decode_s in results:
        timer.add("fetch", fetch_s)
        timer.add("decode", decode_s)
    return [prepared for prepared, _, _ in results]


def _verdict(name: str, pipeline: Pipeline, outcome: Any, batch_size: int, kind: str = "verdict") -> Verdict:
    runtime = pipeline.runtime()
    evidence = {**outcome.evidence, "runtime": {"provider": runtime["provider"], "precision": runtime["precision"],
                                                "batch_size": batch_size}}
    return Verdict(name, pipeline.version, outcome.label, outcome.score, outcome.scores, evidence,
                   pipeline.manifest.quality(), kind)


def in_sample(job_id: str, share: float) -> bool:
    """A stable share of jobs (by id), so a shadow sees the same jobs whichever worker screens them."""
    return int(hashlib.sha256(job_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def _shadow(name: str, live: Verdict | None, job: ClaimedJob, item: MediaItem,
            shadows: list[tuple[Pipeline, float]], out: list[Verdict]) -> None:
    """The shadow versions' opinions on this job, if it is in their sample: stored, compared, never shown."""
    for pipeline, share in shadows:
        if not in_sample(job.id, share):
            continue
        try:
            result = pipeline.predict([item])[0]
        except Exception as exc:  # a shadow must never hurt the live verdict
            log.warning("shadow %s@%s failed on job %s: %s", name, pipeline.version, job.id, exc)
            continue
        out.append(_verdict(name, pipeline, result, 1, kind="shadow"))
        if live is not None:
            metrics.SHADOW_COMPARED.labels(name, pipeline.version, str(live.label == result.label).lower()).inc()
            if live.score is not None and result.score is not None:
                metrics.SHADOW_DELTA.labels(name, pipeline.version).observe(result.score - live.score)


def _predict_isolated(pipeline: Pipeline, items: list[MediaItem]) -> list[Any]:
    """The batch in one call; if that raises, item by item so one bad item cannot sink the rest."""
    try:
        return list(pipeline.predict(items))
    except Exception:
        log.exception("%s/%s failed on a batch of %d; retrying item by item", pipeline.name, pipeline.version,
                      len(items))
    out: list[Any] = []
    for item in items:
        try:
            out.append(pipeline.predict([item])[0])
        except Exception as exc:
            log.exception("%s/%s failed on one item", pipeline.name, pipeline.version)
            out.append(exc)
    return out


def no_shadows(_name: str) -> list[tuple[Pipeline, float]]:
    return []


def infer(prepared: list[Prepared], get_pipeline: Callable[[str], Pipeline], timer: BatchTimer,
          shadows: Callable[[str], list[tuple[Pipeline, float]]] = no_shadows, kind: str = "verdict") -> list[Outcome]:
    """Run each requested model once over every item that asked for it; one Outcome per job."""
    verdicts: dict[str, list[Verdict]] = {p.job.id: [] for p in prepared}
    failures: dict[str, Outcome] = {p.job.id: p.outcome for p in prepared if p.outcome is not None}
    live = [p for p in prepared if p.item is not None]
    names = list(dict.fromkeys(name for p in live for name in p.job.models))
    for name in names:
        wanting = [p for p in live if name in p.job.models and p.job.id not in failures]
        if not wanting:
            continue
        try:
            pipeline = get_pipeline(name)
        except ModelError as exc:
            for p in wanting:
                failures[p.job.id] = Outcome(p.job, error=(exc.code, str(exc)))
            continue
        started = time.perf_counter()
        results = _predict_isolated(pipeline, [p.item for p in wanting if p.item is not None])
        timer.add("infer", time.perf_counter() - started, name)
        for p, result in zip(wanting, results, strict=True):
            if isinstance(result, Exception):
                with logs.job_context(p.job.id, p.job.request_id):
                    log.error("%s/%s failed on job %s: %s", name, pipeline.version, p.job.id, result)
                failures[p.job.id] = Outcome(p.job, error=("internal_error", f"{type(result).__name__}: {result}"),
                                             requeue=True)
            else:
                verdict = _verdict(name, pipeline, result, len(wanting), kind)
                verdicts[p.job.id].append(verdict)
                metrics.PREDICTIONS.labels(name, pipeline.version, result.label).inc()
                if result.score is not None:
                    metrics.SCORES.labels(name, pipeline.version).observe(result.score)
                live_shadows = shadows(name)
                if live_shadows and p.item is not None:
                    _shadow(name, verdict, p.job, p.item, live_shadows, verdicts[p.job.id])
    return [failures.get(p.job.id) or Outcome(p.job, verdicts=verdicts[p.job.id]) for p in prepared]
