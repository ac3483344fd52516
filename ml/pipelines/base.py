"""The pipeline contract: a batch of decoded items in, one Outcome per item out."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

from onnxruntime import InferenceSession

from ml.manifest import Manifest
from ml.runtime import make_session, precision_for
from ml.types import MediaItem, Outcome

log = logging.getLogger(__name__)


class Pipeline(ABC):
    """Loaded once per worker process. ``predict`` takes lists even for one item, so the worker can
    micro-batch; decoding and preprocessing stay per item, the model call is per batch."""

    def __init__(self, manifest: Manifest, providers: list[str], threads: int = 1) -> None:
        self.manifest = manifest
        self.providers = providers
        self.threads = threads
        self.runtimes: dict[str, dict[str, str]] = {}  # role -> the provider and precision it really got

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def session(self, role: str) -> tuple[InferenceSession, str]:
        """An ONNX Runtime session for ``role`` and its precision, chosen from the provider it got.

        FP16 files are only ever run on a live CUDA provider: when CUDA was asked for but the session
        came up on the CPU (ONNX Runtime falls back silently), the session is rebuilt from the CPU's
        variant (INT8 or FP32), since FP16 on the CPU is several times slower than FP32.
        """
        precision, path = self.manifest.variant(role, precision_for(self.providers))
        session = make_session(path, self.providers, self.threads)
        got = session.get_providers()
        if got[0] != self.providers[0]:
            log.warning("%s/%s %s: asked for %s, got %s; using the %s variant", self.name, self.version, role,
                        self.providers[0], got[0], precision_for(got)[0])
            precision, path = self.manifest.variant(role, precision_for(got))
            session = make_session(path, got, self.threads)
            got = session.get_providers()
        self.runtimes[role] = {"provider": got[0], "precision": precision, "requested": self.providers[0]}
        return session, precision

    def runtime(self) -> dict[str, Any]:
        """What this model really runs on: the provider of its sessions (CPU if any fell back), the
        precision of its main stage, and what was asked for."""
        if not self.runtimes:
            return {"provider": "none", "precision": "none", "requested": self.providers[0]}
        providers = {r["provider"] for r in self.runtimes.values()}
        main = self.runtimes.get("classifier") or next(iter(self.runtimes.values()))
        return {"provider": main["provider"] if len(providers) == 1 else "mixed:" + ",".join(sorted(providers)),
                "precision": main["precision"], "requested": self.providers[0],
                "sessions": {role: dict(r) for role, r in self.runtimes.items()}}

    @abstractmethod
    def predict(self, items: list[MediaItem]) -> list[Outcome]: ...
