"""Worker process life cycle: fresh connections, models and threads in the process that runs tasks.

With the prefork pool that is each child (``worker_process_init``); with the solo pool (the embedded
mode's per-process workers) it is the worker itself (``worker_ready``). A parent that forks never
loads a model, opens CUDA or starts a thread.
"""

from __future__ import annotations

import logging
import os

from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from core import job_queue, logs, repairs, status_cache
from core.db import dispose_engine
from core.settings import get_settings
from ml.runtime import ProviderError, choose_providers
from workers import model_cache, process

log = logging.getLogger(__name__)


def _start(queues: str) -> None:
    settings = get_settings()
    choose_providers(settings.onnx_providers)  # refuses ONNX_PROVIDERS=CUDA alone without CUDA
    if settings.inference_queue not in queues.split(",") and settings.text_queue not in queues.split(","):
        return  # a control worker (sweeps, webhooks) loads no model
    _lower_priority(settings.worker_nice)
    model_cache.preload(settings.model_names)
    worker = process.current()
    worker.queues = queues
    others = (settings.text_queue, settings.control_queue, settings.reprocess_queue)
    worker.inference_queues = [q for q in queues.split(",") if q not in others]
    worker.info.update(models=model_cache.loaded(), batch_max=settings.batch_max,
                       onnx_threads=settings.onnx_intra_op_threads, requested_providers=settings.onnx_providers)

    def follow() -> None:  # on every heartbeat: promotions and shadows, then tell /ready
        model_cache.follow()
        worker.info["models"] = model_cache.loaded()

    worker.hooks.append(follow)
    _adopt_orphans()


def _lower_priority(niceness: int) -> None:
    """Batch work yields the CPU to the web: where both share cores (the embedded mode, a one-box
    install) a POST then waits for no model, and throughput is the same (the CPU stays busy)."""
    if niceness > 0:
        try:
            os.nice(niceness)
        except OSError as exc:
            log.warning("could not lower the inference process's priority: %s", exc)


def _adopt_orphans() -> None:
    """A process that starts where another was just killed (a prefork replacement, a restarted solo
    worker) puts the dead one's jobs back at once instead of waiting for their leases to run out."""
    from workers.tasks import wake

    try:
        for owner in repairs.dead_local_owners():
            for job_id in job_queue.release_owner(owner, get_settings().max_attempts):
                wake(job_id)
    except Exception as exc:  # the sweep will do it
        log.warning("could not re-queue the jobs of dead workers: %s", exc)


@worker_process_init.connect
def _after_fork(**_kwargs: object) -> None:
    # Pooled DB connections and Redis sockets from the parent would be shared by every child
    # ("decryption failed or bad record mac"); ONNX sessions and threads must be created in the child.
    dispose_engine()
    status_cache.forget()
    model_cache.clear()
    process.reset()
    try:
        _start(",".join(q.name for q in _app_queues()))
    except ProviderError as exc:
        log.critical("%s", exc)
        raise SystemExit(78) from exc


def _app_queues() -> list:
    from celery import current_app

    return list(current_app.amqp.queues.consume_from.values()) if current_app.amqp.queues.consume_from else []


@worker_ready.connect
def _ready(sender: object = None, **_kwargs: object) -> None:
    pool = getattr(sender, "pool", None)
    if type(pool).__module__.rsplit(".", 1)[-1] not in ("solo", "threads"):
        return  # prefork: the children set themselves up
    try:
        _start(",".join(q.name for q in _app_queues()))
    except ProviderError as exc:
        log.critical("%s", exc)
        raise SystemExit(78) from exc


@worker_process_shutdown.connect
@worker_shutdown.connect
def _stop(**_kwargs: object) -> None:
    process.stop_current()


@setup_logging.connect
def _logging(loglevel: object = None, **_kwargs: object) -> None:
    """JSON lines (LOG_FORMAT) with the job and request ids, instead of Celery's own set-up; the
    level is the worker's --loglevel (deepscreen passes LOG_LEVEL)."""
    settings = get_settings()
    level = loglevel if isinstance(loglevel, str) else logging.getLevelName(loglevel) if loglevel else None
    logs.configure(level or settings.log_level, settings.log_format, "worker")


@task_prerun.connect
def _task_ids(task: object = None, args: tuple = (), **_kwargs: object) -> None:
    request = getattr(task, "request", None)
    request_id = getattr(request, "request_id", None) or (getattr(request, "headers", None) or {}).get("request_id")
    logs.request_id_var.set(logs.clean_request_id(request_id))
    logs.job_id_var.set(str(args[0]) if args and getattr(task, "name", "") != "deepscreen.text" else None)


@task_postrun.connect
def _task_ids_done(**_kwargs: object) -> None:
    logs.request_id_var.set(None)
    logs.job_id_var.set(None)


@worker_init.connect
def _metrics_server(sender: object = None, **_kwargs: object) -> None:
    """The worker's own /metrics (WORKER_METRICS_PORT; beat's exporter on BEAT_METRICS_PORT for the
    control worker), aggregating its pool processes through PROMETHEUS_MULTIPROC_DIR."""
    from workers import metrics_server

    metrics_server.start(_app_queues())
