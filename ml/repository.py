"""The model repository, laid out like Triton's: ``<root>/<name>/<version>/manifest.json`` + files.

Reading manifests is cheap and has no ML imports (the web lists models from here); ``load`` verifies
checksums and builds the pipeline with ONNX Runtime sessions (workers only, after fork).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ml.manifest import MANIFEST, Manifest, ModelError

if TYPE_CHECKING:
    from ml.pipelines import Pipeline


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


class ModelRepository:
    def __init__(self, root: Path) -> None:
        self.root = root

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = [p.name for p in folder.iterdir() if (p / MANIFEST).is_file()]
        return sorted(found, key=_version_key)

    def manifest(self, name: str, version: str | None = None) -> Manifest:
        """The named version, or the newest one (the live version)."""
        versions = self.versions(name)
        if not versions:
            raise ModelError("unknown_model", f"no model named {name!r} in {self.root}")
        version = version or versions[-1]
        if version not in versions:
            raise ModelError("unknown_model", f"model {name!r} has no version {version!r}")
        return Manifest.load(self.root / name / version)

    def manifests(self) -> list[Manifest]:
        return [self.manifest(name) for name in self.names()]

    def load(self, name: str, providers: list[str], threads: int = 1, version: str | None = None) -> Pipeline:
        manifest = self.manifest(name, version)
        manifest.verify()
        from ml.pipelines import pipeline_class  # onnxruntime is imported only where models run

        return pipeline_class(manifest.pipeline)(manifest, providers, threads)
