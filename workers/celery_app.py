"""The Celery app, built from settings. ``celery -A workers.celery_app worker`` finds ``app`` here.

Messages are wake-ups; the jobs table is the queue of record (core.job_queue): a delivery claims a
batch of queued jobs under a lease and records it before its message is acked (acks late, prefetch
1). A killed worker's jobs come back when its lease runs out or a neighbour on the same host sees its
pid is gone, whatever the broker does with the message; the visibility timeout stays above the hard
time limit so Redis does not redeliver a message that is still being worked on.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from celery import Celery
from kombu import Exchange, Queue

from core.settings import Settings, get_settings

TASK_SCREEN = "deepscreen.screen"
TASK_TEXT = "deepscreen.text"
TASK_SWEEP = "deepscreen.sweep"
TASK_WEBHOOK = "deepscreen.webhook"
TASK_REPROCESS = "deepscreen.reprocess"
TASK_MAINTAIN = "deepscreen.maintain"


def message_folder(settings: Settings) -> Path:
    """Where the embedded broker's message files live (written and read in the same folder)."""
    return settings.broker_folder / "out"


def celery_config(settings: Settings) -> dict:
    transport_options: dict = {"visibility_timeout": settings.task_time_limit * 2 + 60}
    if settings.embedded:
        folder, messages = settings.broker_folder, str(message_folder(settings))
        transport_options.update(
            data_folder_in=messages, data_folder_out=messages,
            processed_folder=str(folder / "processed"), control_folder=str(folder / "control"),
            store_processed=False,
            polling_interval=0.05,  # idle; kombu's default of 1 s would cap the embedded mode at ~1 job/s
            busy_polling_interval=0.005,  # for busy_seconds after a message (workers.filesystem_transport)
            busy_seconds=2.0,
        )
    return {
        "broker_url": settings.broker_url,
        # None: the URL's scheme picks the transport (redis://, amqp://)
        "broker_transport": "workers.filesystem_transport:Transport" if settings.embedded else None,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "result_backend": settings.result_backend,
        "result_expires": timedelta(minutes=10),
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit,
        "task_time_limit": settings.task_time_limit,
        "task_default_queue": settings.inference_queue,
        # Each queue its own direct exchange and routing key: a bare Queue(name) would bind every queue
        # to the default exchange under the default queue's key, and each message would land in all.
        "task_queues": [Queue(name, Exchange(name, type="direct"), routing_key=name)
                        for name in (settings.inference_queue, settings.text_queue, settings.control_queue,
                                     settings.reprocess_queue)],
        # Repairs and webhooks ride their own queue and worker, so they never wait behind inference
        # messages (a wedged or saturated inference worker must not stop the repair of its jobs).
        "task_routes": {
            TASK_SCREEN: {"queue": settings.inference_queue},
            TASK_TEXT: {"queue": settings.text_queue},
            TASK_SWEEP: {"queue": settings.control_queue},
            TASK_WEBHOOK: {"queue": settings.control_queue},
            TASK_MAINTAIN: {"queue": settings.control_queue},
            TASK_REPROCESS: {"queue": settings.reprocess_queue},
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "beat_schedule": {
            "sweep": {"task": TASK_SWEEP, "schedule": settings.sweep_interval_seconds,
                      "options": {"expires": max(1.0, settings.sweep_interval_seconds * 0.9)}},
            "maintain": {"task": TASK_MAINTAIN, "schedule": 60.0, "options": {"expires": 55}},
        },
        "imports": ["workers.tasks", "workers.signals"],
    }


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    celery = Celery("deepscreen")
    celery.conf.update(celery_config(settings))
    return celery


def __getattr__(name: str) -> Celery:
    # `celery -A workers.celery_app` looks up `app`; build it on first access, not at import.
    if name in ("app", "celery"):
        global app
        app = make_celery()
        return app
    raise AttributeError(name)
