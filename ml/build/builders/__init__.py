"""Builders write model versions into the repository from packages that ship weights (no network).

Each builder is a function ``build(root: Path, force: bool) -> Manifest``; ``BUILDERS`` maps a model
name to the dotted path of its builder so that heavy build-time imports stay lazy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from ml.manifest import Manifest

BUILDERS: dict[str, str] = {
    "nsfw": "ml.build.builders.nsfw:build",
    "deepfake": "ml.build.builders.deepfake:build",
    # deepfake/2 (MesoNet); the newest version is live, so it becomes the default deepfake model
    "deepfake_v2": "ml.build.builders.deepfake_v2:build",
    "synthetic": "ml.build.builders.synthetic:build",
    "text": "ml.build.builders.text:build",
    "meme": "ml.build.builders.meme:build",  # after text: it reuses text/1's files
    # text/2 and meme/2: the trained hate stack from ml/weights/text_v2 (live once built)
    "text_v2": "ml.build.builders.text_v2:build",  # after text: copies text/1's TF-IDF models
    "meme_v2": "ml.build.builders.meme_v2:build",  # after text_v2: copies its files
}


def builder(name: str) -> Callable[[Path, bool], Manifest]:
    module, _, attr = BUILDERS[name].partition(":")
    fn: Callable[[Path, bool], Manifest] = getattr(importlib.import_module(module), attr)
    return fn


def build_all(root: Path, names: list[str] | None = None, force: bool = False) -> list[Manifest]:
    return [builder(name)(root, force) for name in (names or list(BUILDERS))]
