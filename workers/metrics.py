"""Worker-side Prometheus metrics (exported when PROMETHEUS_MULTIPROC_DIR is shared with the web)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

JOBS = Counter("deepscreen_jobs_finished_total", "Jobs finished by workers", ["status"])
DURATION = Histogram(
    "deepscreen_job_seconds", "Time from claim to result, per job", ["format"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)


def observe(fmt: str, status: str, seconds: float) -> None:
    JOBS.labels(status).inc()
    if fmt:
        DURATION.labels(fmt).observe(seconds)
