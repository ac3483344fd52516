"""Worker process life cycle: fresh connections and models after fork, never inherited ones."""

from __future__ import annotations

import logging

from celery.signals import worker_process_init

from core import status_cache
from core.db import dispose_engine
from core.settings import get_settings
from workers import model_cache

log = logging.getLogger(__name__)


@worker_process_init.connect
def _after_fork(**_kwargs: object) -> None:
    # Pooled DB connections and Redis sockets from the parent would be shared by every child
    # ("decryption failed or bad record mac"); ONNX sessions must be created in the child.
    dispose_engine()
    status_cache.forget()
    model_cache.clear()
    model_cache.preload(get_settings().model_names)
