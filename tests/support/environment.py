"""Point every process-wide cache (settings, engine, store, Redis) at a given environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def reset_caches() -> None:
    from core import model_registry, status_cache
    from core.db import dispose_engine
    from core.object_store import get_store
    from core.settings import get_settings

    get_settings.cache_clear()
    get_store.cache_clear()
    status_cache.forget()
    dispose_engine()
    model_registry.forget()


@contextmanager
def apply_env(env: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    reset_caches()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_caches()
