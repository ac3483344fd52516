"""Pipelines: the code that turns decoded media into an Outcome with a model version's ONNX files.

A manifest names its pipeline by key; the class is imported only when a worker loads that model.
"""

from __future__ import annotations

import importlib

from ml.manifest import ModelError
from ml.pipelines.base import Pipeline

REGISTRY: dict[str, str] = {
    "nsfw": "ml.pipelines.nsfw:NsfwPipeline",
    "deepfake": "ml.pipelines.deepfake:DeepfakePipeline",
    "synthetic": "ml.pipelines.synthetic:SyntheticPipeline",
    "meme": "ml.pipelines.meme:MemePipeline",
    "text": "ml.pipelines.text:TextPipeline",
}


def pipeline_class(key: str) -> type[Pipeline]:
    target = REGISTRY.get(key)
    if target is None:
        raise ModelError("unknown_pipeline", f"no pipeline called {key!r}")
    module, _, attr = target.partition(":")
    cls: type[Pipeline] = getattr(importlib.import_module(module), attr)
    return cls


__all__ = ["REGISTRY", "Pipeline", "pipeline_class"]
