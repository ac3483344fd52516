"""Typed views of the API's JSON: jobs, results, batches, lookups, models.

Parsing is lenient on purpose: a field the server adds later is kept in ``raw`` and never breaks an
older client; a field it drops reads as ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FINAL = frozenset({"succeeded", "failed", "expired", "cancelled"})
NOT_VALIDATED = "not_validated_on_real_data"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Result:
    """One model's verdict on one job."""

    model: str
    model_version: str
    label: str
    score: float | None
    scores: dict[str, float]
    evidence: dict[str, Any]
    validation: dict[str, Any]

    @classmethod
    def from_json(cls, model: str, raw: dict[str, Any]) -> Result:
        return cls(model=model, model_version=str(raw.get("model_version", "")), label=str(raw.get("label", "")),
                   score=raw.get("score"), scores=_dict(raw.get("scores")), evidence=_dict(raw.get("evidence")),
                   validation=_dict(raw.get("validation")))

    @property
    def validated(self) -> bool:
        """True only when the model version was evaluated on real labelled data (see ml/manifest.py)."""
        return self.validation.get("status") == "validated"

    @property
    def faces(self) -> list[dict[str, Any]]:
        """The deepfake model's per-face evidence: ``{frame, box: [x1, y1, x2, y2], score, …}``."""
        return [f for f in self.evidence.get("faces", []) if isinstance(f, dict)]

    @property
    def ocr_lines(self) -> list[dict[str, Any]]:
        """The meme model's OCR lines: ``{text, box: four [x, y] corners, confidence}``."""
        return [line for line in self.evidence.get("ocr_lines", []) if isinstance(line, dict)]


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class Job:
    """A job as ``GET /v1/jobs/<id>`` shows it."""

    id: str
    status: str
    attempts: int = 0
    models: list[str] = field(default_factory=list)
    media: dict[str, Any] | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    results: dict[str, Result] = field(default_factory=dict)
    error: JobError | None = None
    status_url: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Job:
        error = raw.get("error")
        return cls(
            id=str(raw["id"]), status=str(raw.get("status", "")), attempts=int(raw.get("attempts") or 0),
            models=list(raw.get("models") or []),
            media=raw.get("media") if isinstance(raw.get("media"), dict) else None,
            created_at=raw.get("created_at"), started_at=raw.get("started_at"), finished_at=raw.get("finished_at"),
            results={m: Result.from_json(m, _dict(r)) for m, r in _dict(raw.get("results")).items()},
            error=JobError(str(error.get("code") or ""), str(error.get("message") or "")) if isinstance(error, dict)
            else None,
            status_url=raw.get("status_url"), raw=raw,
        )

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class JobPage:
    """One page of ``GET /v1/jobs``; pass ``next`` back as ``cursor`` for the following one."""

    items: list[Job]
    next: str | None


@dataclass(frozen=True)
class BatchItem:
    """One submitted file or URL of a batch: its job, or why it was refused at submission."""

    index: int
    job_id: str | None
    status: str
    error: JobError | None = None
    name: str | None = None  # what the caller submitted (file name or URL), when the client knows it

    @classmethod
    def from_json(cls, raw: dict[str, Any], name: str | None = None) -> BatchItem:
        error = raw.get("error")
        return cls(index=int(raw.get("index", 0)), job_id=raw.get("job_id"), status=str(raw.get("status", "")),
                   error=JobError(str(error.get("code") or ""), str(error.get("message") or ""))
                   if isinstance(error, dict) else None, name=name)


@dataclass(frozen=True)
class Batch:
    """Many items submitted together.

    ``id`` is the server's batch id; ``None`` when the server has no ``/v1/batches`` and the client
    submitted the items one by one (``local`` is then True and ``Client.get_batch`` re-reads each job).
    """

    id: str | None
    items: list[BatchItem]
    counts: dict[str, int]
    created_at: str | None = None
    status_url: str | None = None
    local: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any], names: list[str] | None = None) -> Batch:
        items = [BatchItem.from_json(_dict(i), (names or [])[n] if names and n < len(names) else None)
                 for n, i in enumerate(raw.get("items") or [])]
        counts = {str(k): int(v) for k, v in _dict(raw.get("counts")).items()} or count_statuses(items)
        return cls(id=raw.get("id"), items=items, counts=counts, created_at=raw.get("created_at"),
                   status_url=raw.get("status_url"), raw=raw)

    @property
    def job_ids(self) -> list[str]:
        return [i.job_id for i in self.items if i.job_id]

    @property
    def final(self) -> bool:
        return all(i.status in FINAL or i.job_id is None for i in self.items)


def count_statuses(items: list[BatchItem]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.status] = counts.get(item.status, 0) + 1
    return counts


@dataclass(frozen=True)
class Lookup:
    """``GET /v1/lookup/<sha256>``: what the live model versions already said about this content."""

    sha256: str
    results: dict[str, Result]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Lookup:
        return cls(sha256=str(raw.get("sha256", "")),
                   results={m: Result.from_json(m, _dict(r)) for m, r in _dict(raw.get("results")).items()})


@dataclass(frozen=True)
class ModelInfo:
    """One entry of ``GET /v1/models``."""

    name: str
    version: str
    task: str
    labels: list[str]
    thresholds: dict[str, float]
    default: bool
    validation: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ModelInfo:
        return cls(name=str(raw.get("name", "")), version=str(raw.get("version", "")), task=str(raw.get("task", "")),
                   labels=list(raw.get("labels") or []), thresholds=_dict(raw.get("thresholds")),
                   default=bool(raw.get("default")), validation=_dict(raw.get("validation")), raw=raw)

    @property
    def validated(self) -> bool:
        return self.validation.get("status") == "validated"


@dataclass(frozen=True)
class Token:
    """``POST /v1/auth/token``: a short-lived JWT traded for an API key."""

    access_token: str
    expires_in: int
    scope: str
