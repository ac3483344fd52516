"""A stand-in for the one thing this machine lacks, a GPU: a real CPU session that reports the CUDA
provider, so code that decides by ``session.get_providers()`` takes its CUDA road while the graph
really runs. It logs each call's batch size (rows of the first feed)."""

from __future__ import annotations

import numpy as np

from ml.runtime import CPU, CUDA


class ClaimsCuda:
    def __init__(self, session: object, calls: list[int]) -> None:
        self._session, self.calls = session, calls

    def get_providers(self) -> list[str]:
        return [CUDA, CPU]

    def run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calls.append(len(next(iter(feeds.values()))))
        return self._session.run(names, feeds)  # type: ignore[attr-defined, no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self._session, name)
