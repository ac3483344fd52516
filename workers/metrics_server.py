"""Each worker serves its own /metrics: Prometheus scrapes every worker container directly, so no
folder needs sharing across hosts. Inside one container the prefork pool processes write to
PROMETHEUS_MULTIPROC_DIR and this server (in the worker's main process) adds them up.

The control worker (beat) serves the queue exporter instead: how many jobs wait and for how long,
read from the jobs table (the queue of record) and, for Redis, the broker's list lengths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import UTC

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.settings import get_settings

log = logging.getLogger(__name__)


class QueueCollector(Collector):
    """deepscreen_queue_depth{queue} and deepscreen_oldest_queued_job_age_seconds{queue}, read at scrape time."""

    def collect(self) -> Iterator[Metric]:
        from sqlalchemy import func, select

        from core.db import session_scope
        from core.models import Job, JobStatus, utcnow

        settings = get_settings()
        depth = GaugeMetricFamily("deepscreen_queue_depth", "Jobs or messages waiting, per queue", labels=["queue"])
        age = GaugeMetricFamily("deepscreen_oldest_queued_job_age_seconds", "Age of the oldest queued job",
                                labels=["queue"])
        try:
            with session_scope() as session:
                count, oldest = session.execute(
                    select(func.count(), func.min(Job.created_at)).where(Job.status == JobStatus.QUEUED)
                ).one()
            depth.add_metric([settings.inference_queue], float(count))
            if oldest is not None:
                oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
                age.add_metric([settings.inference_queue], max(0.0, (utcnow() - oldest).total_seconds()))
            else:
                age.add_metric([settings.inference_queue], 0.0)
        except Exception as exc:  # a scrape must answer even when the database does not
            log.warning("queue exporter: database unavailable: %s", exc)
        if settings.broker_url.startswith(("redis://", "rediss://")):
            try:
                import redis

                client = redis.Redis.from_url(settings.broker_url, socket_timeout=2)
                for queue in (settings.text_queue, settings.control_queue):
                    depth.add_metric([queue], float(client.llen(queue)))
            except Exception as exc:
                log.warning("queue exporter: broker unavailable: %s", exc)
        yield depth
        yield age


class DriftCollector(Collector):
    """deepscreen_model_drift_psi{model,version}: PSI of each live version's recent scores against the
    window after its promotion (core.drift), recomputed at most once a minute."""

    def __init__(self, every: float = 60.0) -> None:
        self.every, self._at, self._rows = every, 0.0, []  # type: ignore[var-annotated]

    def collect(self) -> Iterator[Metric]:
        import time

        from core import drift

        gauge = GaugeMetricFamily("deepscreen_model_drift_psi", "Population stability index of a live "
                                  "version's scores vs the window after its promotion", labels=["model", "version"])
        if time.monotonic() - self._at > self.every:
            try:
                self._rows, self._at = drift.live_drift(), time.monotonic()
            except Exception as exc:
                log.warning("drift exporter: %s", exc)
        for row in self._rows:
            gauge.add_metric([row["model"], row["version"]], row["psi"])
        yield gauge


def start(queues: list) -> None:
    settings = get_settings()
    names = {getattr(q, "name", str(q)) for q in queues}
    control = settings.control_queue in names and settings.inference_queue not in names
    port = settings.beat_metrics_port if control else settings.worker_metrics_port
    if not port:
        return
    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    if control:
        registry.register(QueueCollector())
        registry.register(DriftCollector())
    try:
        start_http_server(port, registry=registry)
        log.info("metrics on :%d/metrics", port)
    except OSError as exc:  # a second worker on the same host: its pool is counted by the first one's
        log.warning("metrics port %d unavailable (%s); not serving /metrics from this worker", port, exc)
