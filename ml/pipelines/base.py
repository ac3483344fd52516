"""The pipeline contract: a batch of decoded items in, one Outcome per item out."""

from __future__ import annotations

from abc import ABC, abstractmethod

from onnxruntime import InferenceSession

from ml.manifest import Manifest
from ml.runtime import make_session, precision_for
from ml.types import MediaItem, Outcome


class Pipeline(ABC):
    """Loaded once per worker process. ``predict`` takes lists even for one item, so the worker can
    micro-batch; decoding and preprocessing stay per item, the model call is per batch."""

    def __init__(self, manifest: Manifest, providers: list[str], threads: int = 1) -> None:
        self.manifest = manifest
        self.providers = providers
        self.threads = threads

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def session(self, role: str) -> tuple[InferenceSession, str]:
        """An ONNX Runtime session for ``role`` and its precision, chosen to suit the provider."""
        precision, path = self.manifest.variant(role, precision_for(self.providers))
        return make_session(path, self.providers, self.threads), precision

    @abstractmethod
    def predict(self, items: list[MediaItem]) -> list[Outcome]: ...
