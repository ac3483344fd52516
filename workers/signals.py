"""Worker process life cycle: fresh connections, models and threads in the process that runs tasks.

With the prefork pool that is each child (``worker_process_init``); with the solo pool (the embedded
mode's per-process workers) it is the worker itself (``worker_ready``). A parent that forks never
loads a model, opens CUDA or starts a thread.
"""

from __future__ import annotations

import logging

from celery.signals import worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown

from core import job_queue, repairs, status_cache
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
    model_cache.preload(settings.model_names)
    worker = process.current()
    worker.queues = queues
    worker.info.update(models=model_cache.loaded(), batch_max=settings.batch_max,
                       onnx_threads=settings.onnx_intra_op_threads, requested_providers=settings.onnx_providers)
    _adopt_orphans()


def _adopt_orphans() -> None:
    """A process that starts where another was just killed (a prefork replacement, a restarted solo
    worker) puts the dead one's jobs back at once instead of waiting for their leases to run out."""
    from workers.tasks import wake

    try:
        for owner in repairs.dead_local_owners():
            for job_id in job_queue.release_owner(owner):
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
