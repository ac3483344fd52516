"""Model manifests: what a model version is, which files it needs and how to check them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
CARD = "MODEL_CARD.md"
VALIDATED, NOT_VALIDATED = "validated", "not_validated_on_real_data"

# The manifest's ``validation`` block (written by builders and ``deepscreen eval --record``):
# {"status": "validated" | "not_validated_on_real_data",
#  "summary": "one line a moderator reads beside the label",
#  "date": "YYYY-MM-DD",
#  "datasets": [{"name", "description", "split" (how it was held out), "n", "positives",
#                "auroc", "auroc_ci": [lo, hi], "average_precision", "average_precision_ci",
#                "threshold", "accuracy", "precision", "recall", "fpr", "ece", "by_group": {...}}]}
# Figures are fractions in [0, 1]; intervals are bootstrap 95 %. Only real labelled data counts as
# "validated": synthetic or pseudo-fake checks go in provenance, never here.


class ModelError(RuntimeError):
    """A model cannot be used: missing, unknown, or its files do not match the manifest."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Manifest:
    """Parsed ``manifest.json``.

    ``files`` maps a role (``classifier``, ``detector``, ``classifier.int8`` …) to
    ``{"path", "sha256"}``; ``pipeline`` names the code that runs them (see ml.pipelines).
    """

    name: str
    version: str
    task: str
    pipeline: str
    directory: Path
    files: dict[str, dict[str, str]]
    labels: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    media: list[str] = field(default_factory=lambda: ["image"])
    preprocessing: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    validation: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError("bad_manifest", f"cannot read {path}: {exc}") from exc
        try:
            return cls(
                name=raw["name"], version=str(raw["version"]), task=raw["task"], pipeline=raw["pipeline"],
                directory=directory, files=raw["files"], labels=raw.get("labels", []),
                thresholds=raw.get("thresholds", {}), media=raw.get("media", ["image"]),
                preprocessing=raw.get("preprocessing", {}), inputs=raw.get("inputs", {}),
                provenance=raw.get("provenance", {}), options=raw.get("options", {}),
                description=raw.get("description", ""), validation=raw.get("validation", {}),
            )
        except KeyError as exc:
            raise ModelError("bad_manifest", f"{path} lacks the field {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "task": self.task, "pipeline": self.pipeline,
            "description": self.description, "media": self.media, "files": self.files,
            "labels": self.labels, "thresholds": self.thresholds, "preprocessing": self.preprocessing,
            "inputs": self.inputs, "provenance": self.provenance, "options": self.options,
            "validation": self.validation,
        }

    def save(self) -> None:
        (self.directory / MANIFEST).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    def path(self, role: str) -> Path:
        return self.directory / self.files[role]["path"]

    def has(self, role: str) -> bool:
        return role in self.files

    def variant(self, role: str, preferences: list[str]) -> tuple[str, Path]:
        """The first preferred precision this model ships for ``role`` (``role.int8`` …; fp32 is ``role``)."""
        for precision in preferences:
            key = role if precision == "fp32" else f"{role}.{precision}"
            if key in self.files:
                return precision, self.path(key)
        return "fp32", self.path(role)

    def verify(self) -> None:
        """Refuse the model unless every file exists and matches its recorded sha256."""
        for role, entry in self.files.items():
            path = self.directory / entry["path"]
            if not path.is_file():
                raise ModelError("model_file_missing", f"{self.name}/{self.version}: {role} file {path} is missing")
            actual = sha256_file(path)
            if actual != entry.get("sha256"):
                raise ModelError(
                    "model_checksum_mismatch",
                    f"{self.name}/{self.version}: {entry['path']} has sha256 {actual}, "
                    f"the manifest says {entry.get('sha256')}",
                )

    def summary(self) -> dict[str, Any]:
        """What GET /v1/models shows: no paths, no hashes of internals beyond the files list."""
        return {
            "name": self.name, "version": self.version, "task": self.task, "description": self.description,
            "media": self.media, "labels": self.labels, "thresholds": self.thresholds,
            "variants": sorted(self.files), "provenance": self.provenance,
            "validation": self.quality(),
        }

    def quality(self) -> dict[str, Any]:
        """The validation block every result and GET /v1/models carry: what this version was evaluated
        on, the figures and the date, or an explicit "not validated on real data" (see VALIDATION)."""
        if self.validation:
            return self.validation
        return {"status": NOT_VALIDATED, "summary": "not validated on real data", "datasets": []}


def file_entry(directory: Path, path: Path) -> dict[str, str]:
    """Manifest entry for a file written into a model version folder."""
    return {"path": str(path.relative_to(directory)), "sha256": sha256_file(path)}
