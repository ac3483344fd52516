"""Celery workers: thin tasks over plain functions in ``workers.screening`` and ``workers.sweeps``."""
