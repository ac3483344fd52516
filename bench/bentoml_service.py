"""The BentoML peer: the same ``ml/`` pipeline as deepscreen's workers, served by BentoML 1.4 with
adaptive batching, no auth, no storage, no database. Runs in .venv-bench (bench/peer_venv.py):

    cd <repo> && MODEL_REPOSITORY=$PWD/model_repository .venv-bench/bin/bentoml serve \
        bench.bentoml_service:DeepfakePeer --port 3000

Each worker process loads the model once, with ONNX_INTRA_OP_THREADS threads (1, as deepscreen's
default); a request carries one image or a list (multipart fields ``images``), the dispatcher
batches requests (up to BENCH_BATCH_MAX, default 32), and each image is decoded with
``ml.decode.decode`` as a deepscreen worker decodes it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bentoml

WORKERS = int(os.environ.get("BENCH_BENTO_WORKERS", "2"))
BATCH_MAX = int(os.environ.get("BENCH_BATCH_MAX", "32"))


@bentoml.service(workers=WORKERS, traffic={"timeout": 300})
class DeepfakePeer:
    def __init__(self) -> None:
        from ml.decode import DecodeLimits
        from ml.repository import ModelRepository

        repo = ModelRepository(Path(os.environ["MODEL_REPOSITORY"]))
        self.pipeline = repo.load(os.environ.get("BENCH_MODEL", "deepfake"), ["CPUExecutionProvider"],
                                  int(os.environ.get("ONNX_INTRA_OP_THREADS", "1")))
        self.limits = DecodeLimits()

    @bentoml.api(batchable=True, max_batch_size=BATCH_MAX, max_latency_ms=10_000)
    def screen(self, images: list[Path]) -> list[dict[str, Any]]:
        from ml.decode import decode

        items = [decode(path.read_bytes(), "jpeg", self.limits) for path in images]
        return [{"label": o.label, "score": o.score, "batch_size": len(items)} for o in self.pipeline.predict(items)]
