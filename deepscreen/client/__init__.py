"""The deepscreen Python client: ``from deepscreen.client import Client``.

Needs ``requests`` only; none of the server's packages (Flask, SQLAlchemy, Celery, ONNX Runtime).

    with Client("https://screen.example.org", api_key="ds_…") as ds:
        job = ds.wait(ds.submit_file("photo.jpg"))
        print(job.results["deepfake"].label, job.results["deepfake"].score)
"""

from deepscreen.client.client import MAX_WAIT, Client
from deepscreen.client.errors import (
    ApiError,
    AuthError,
    DeepscreenError,
    FeatureUnavailable,
    NotFound,
    RateLimited,
    TransportError,
    Unavailable,
    WaitTimeout,
)
from deepscreen.client.files import MEDIA_EXTENSIONS, media_files, sha256_file
from deepscreen.client.types import FINAL, Batch, BatchItem, Job, JobError, JobPage, Lookup, ModelInfo, Result, Token

__all__ = [
    "FINAL", "MAX_WAIT", "MEDIA_EXTENSIONS", "ApiError", "AuthError", "Batch", "BatchItem", "Client",
    "DeepscreenError", "FeatureUnavailable", "Job", "JobError", "JobPage", "Lookup", "ModelInfo", "NotFound",
    "RateLimited", "Result", "Token", "TransportError", "Unavailable", "WaitTimeout", "media_files", "sha256_file",
]
