"""Pure model code: bytes and arrays in, scores out. Imports neither Flask, Celery nor the database."""

from ml.types import MediaError, MediaItem, Outcome

__all__ = ["MediaError", "MediaItem", "Outcome"]
