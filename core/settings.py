"""Settings: every knob is an environment variable with a default that serves the embedded mode.

The embedded mode (``deepscreen up``) needs no server: SQLite, Celery's filesystem transport and a
local blob folder under ``DATA_DIR``. Service mode sets the URLs (docker-compose does). Reading the
settings has no side effects: nothing is created or connected here.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(RuntimeError):
    """Raised at start-up with a message that names the bad variable."""


class Settings(BaseSettings):
    """All settings; the README's table is generated from these field descriptions."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    data_dir: Path = Field(Path("var"), description="Folder for the embedded database, queue and blobs")
    database_url: str = Field("", description="SQLAlchemy URL; default sqlite:///$DATA_DIR/deepscreen.db")
    broker_url: str = Field("", description="Celery broker: redis://, amqp:// or filesystem:// (default)")
    result_backend: str = Field("", description="Celery results (only /v1/text uses them); default REDIS_URL or DB")
    redis_url: str = Field("", description="Redis for the status cache and rate limits; empty: no status cache, "
                                            "limits counted in $DATA_DIR/ratelimits.db")
    storage_url: str = Field("", description="file:///path (default $DATA_DIR/blobs) or s3://bucket")
    s3_endpoint_url: str = Field("", description="S3 endpoint for MinIO or a test server; empty means AWS")
    s3_region: str = Field("us-east-1", description="S3 region")
    model_repository: Path = Field(Path("model_repository"), description="Root of the model repository")
    onnx_providers: str = Field("auto", description="Comma list of ONNX Runtime providers, or auto (CUDA if present)")
    onnx_intra_op_threads: int = Field(
        1, ge=0, description="ONNX Runtime threads per inference process (0 = ORT default: every core)"
    )
    default_models: str = Field("deepfake,meme", description="Models run when a request names none (comma list)")

    jwt_secret: str = Field("", description="HMAC secret for HS* tokens; default: $DATA_DIR/jwt_secret")
    jwt_keys: str = Field("", description='JSON {"kid": "secret"} of keys accepted during rotation')
    jwt_active_kid: str = Field("", description="kid of the key that signs new tokens (with JWT_KEYS)")
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = Field("HS256", description="Pinned JWT algorithm")
    jwt_issuer: str = Field("deepscreen", description="iss claim issued and required")
    jwt_audience: str = Field("deepscreen-api", description="aud claim issued and required")
    jwt_ttl_seconds: int = Field(900, gt=0, description="Lifetime of tokens from POST /v1/auth/token")
    jwt_leeway_seconds: int = Field(10, ge=0, description="Clock skew tolerated on exp/nbf/iat")
    api_key_cache_seconds: float = Field(
        2.0, ge=0, le=10, description="How long a web process trusts a key's live/revoked state (revocation delay)"
    )

    rate_limit_default: str = Field("600/minute", description="Default per-subject limit (flask-limiter syntax)")
    rate_limit_submit: str = Field("120/minute", description="Limit on POST /v1/jobs per subject")
    rate_limit_auth: str = Field("30/minute", description="Limit on POST /v1/auth/token per client address")

    max_upload_bytes: int = Field(50 * 1024 * 1024, gt=0, description="Largest accepted upload (413 above)")
    max_image_pixels: int = Field(40_000_000, gt=0, description="Largest decoded image, width x height")
    max_video_seconds: float = Field(120.0, gt=0, description="Longest accepted video")
    max_video_frames: int = Field(32, gt=0, description="Frames sampled from a video")
    max_text_chars: int = Field(10_000, gt=0, description="Longest text field")
    allowed_formats: str = Field(
        "jpeg,png,gif,webp,mp4,mov,avi,webm", description="Upload formats accepted, by magic bytes"
    )

    inference_queue: str = Field("inference", description="Celery queue for media jobs")
    text_queue: str = Field("text", description="Celery queue for synchronous text screening")
    control_queue: str = Field("control", description="Celery queue for sweeps and webhooks (never behind inference)")
    reprocess_queue: str = Field("reprocess", description="Celery queue for reprocessing chunks (inference workers)")
    reprocess_rate: float = Field(20.0, gt=0, description="Reprocessing: jobs per second at most, per run")
    reprocess_chunk: int = Field(16, gt=0, description="Reprocessing: jobs screened per chunk")
    reprocess_on_promote: bool = Field(True, description="A promotion starts a reprocessing run over stored uploads")
    reprocess_every_hours: float = Field(
        0.0, ge=0, description="Beat re-screens what the live versions have not judged, this often (0 = never)"
    )
    retention_days: float = Field(
        0.0, ge=0, description="Expire uploads and results after this many days (0 = keep; API keys may override)"
    )
    keep_verdicts: bool = Field(True, description="An expired job keeps its verdict summary (label, score)")
    batch_max: int = Field(8, gt=0, description="Most queued jobs an inference worker screens in one batch")
    batch_wait_ms: int = Field(
        2, ge=0, description="How long a worker waits for more queued jobs when its batch is not full"
    )
    drain_seconds: float = Field(
        2.0, ge=0, description="How long one delivery keeps claiming queued batches before it returns"
    )
    fetch_threads: int = Field(
        0, ge=0, description="Threads per worker process that fetch and decode a batch's media "
                             "(0: the cores each inference process has, from 2 to 8)"
    )
    worker_nice: int = Field(
        5, ge=0, le=19, description="Niceness of inference processes: on a shared box the web answers first (0: off)"
    )
    lease_seconds: int = Field(
        30, ge=5, description="A running job's lease; renewed while its worker lives, then the job is re-queued"
    )
    sweep_interval_seconds: float = Field(
        5.0, gt=0, description="How often beat repairs expired leases, lost messages and pending webhooks"
    )
    task_soft_time_limit: int = Field(120, gt=0, description="Seconds before a task is asked to stop")
    task_time_limit: int = Field(150, gt=0, description="Seconds before a task's process is killed")
    max_attempts: int = Field(3, gt=0, description="Deliveries of one job before it fails attempts_exhausted")
    status_cache_ttl: int = Field(3600, gt=0, description="Seconds a status stays in the Redis cache")
    stuck_after_seconds: int = Field(600, gt=0, description="A running job older than this is requeued by beat")
    requeue_queued_after_seconds: int = Field(
        30, gt=0, description="A queued job nobody claimed for this long gets a new wake-up from beat"
    )

    cors_origins: str = Field("", description="Exact origins CORS allows (scheme://host[:port], comma list)")
    webhook_secret: str = Field("", description="HMAC key that signs webhooks; empty disables callback_url")
    webhook_allowed_hosts: str = Field(
        "", description="Comma list of hosts callbacks may reach, private addresses included (empty: any host "
        "whose every address is public, checked at each delivery, never a cloud metadata address)")
    url_submissions: bool = Field(True, description="Accept `url` instead of `file` (the server fetches it)")
    url_fetch_allowed_hosts: str = Field(
        "", description="Comma list of hosts URL submissions may fetch even at private/loopback addresses"
    )
    url_fetch_timeout_seconds: float = Field(5.0, gt=0, description="Connect and per-read timeout of a URL fetch")
    url_fetch_deadline_seconds: float = Field(20.0, gt=0, description="Longest a whole URL fetch may take")
    log_level: str = Field("INFO", description="Python log level")
    log_format: Literal["json", "text"] = Field("json", description="Log lines as JSON (one object a line) or text")
    worker_metrics_port: int = Field(
        9808, ge=0, le=65535, description="Port of each inference worker's own /metrics (0 = none)"
    )
    beat_metrics_port: int = Field(
        9809, ge=0, le=65535, description="Port of beat's /metrics: queue depth and the oldest job's age (0 = none)"
    )
    web_bind: str = Field("127.0.0.1:8000", description="Address gunicorn binds (`deepscreen web` / `up`)")
    web_workers: int = Field(2, gt=0, description="gunicorn worker processes")
    web_threads: int = Field(
        128, gt=0, description="Threads per gunicorn worker (gthread); long polls use at most 3/4 of them"
    )
    web_upload_slots: int = Field(
        4, gt=0, description="Uploads (or URL fetches) one web process reads at once; each may hold MAX_UPLOAD_BYTES"
    )
    worker_concurrency: int = Field(
        0, ge=0, description="Inference processes per `deepscreen worker`/`up` (0 = cores // ONNX threads)"
    )

    @field_validator("data_dir", "model_repository")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        data = self.data_dir
        if not self.database_url:
            self.database_url = f"sqlite:///{data / 'deepscreen.db'}"
        if not self.broker_url:
            self.broker_url = "filesystem://"
        if not self.result_backend:
            self.result_backend = self.redis_url or f"db+{self.database_url}"
        if not self.storage_url:
            self.storage_url = f"file://{data / 'blobs'}"
        if not self.storage_url.startswith(("file://", "s3://")):
            raise ValueError(f"STORAGE_URL must start with file:// or s3://, got {self.storage_url!r}")
        if self.task_time_limit <= self.task_soft_time_limit:
            raise ValueError("TASK_TIME_LIMIT must be greater than TASK_SOFT_TIME_LIMIT")
        if self.jwt_keys:
            keys = self.signing_keys
            if self.jwt_active_kid not in keys:
                raise ValueError("JWT_ACTIVE_KID must name one of the keys in JWT_KEYS")
        return self

    @property
    def embedded(self) -> bool:
        return self.broker_url.startswith("filesystem://")

    @property
    def inference_processes(self) -> int:
        """WORKER_CONCURRENCY, or as many 1-model-call-at-a-time processes as the cores allow."""
        if self.worker_concurrency:
            return self.worker_concurrency
        return max(1, usable_cores() // max(1, self.onnx_intra_op_threads))

    @property
    def fetch_thread_count(self) -> int:
        """FETCH_THREADS, or the cores each inference process has: decodes beyond them only contend
        with the model threads (on 2 cores, 4 decoding threads cost a worker 0.2-0.7 CPU ms per photo
        more than 2: docs/benchmarks.md). At least 2, so one GET waits while another media decodes."""
        if self.fetch_threads:
            return self.fetch_threads
        return min(8, max(2, usable_cores() // self.inference_processes))

    @property
    def broker_folder(self) -> Path:
        return self.data_dir / "broker"

    @property
    def signing_keys(self) -> dict[str, str]:
        """kid -> secret for every key that verifies; the empty kid is the single JWT_SECRET."""
        if self.jwt_keys:
            try:
                keys = json.loads(self.jwt_keys)
            except json.JSONDecodeError as exc:
                raise ValueError(f"JWT_KEYS is not valid JSON: {exc}") from exc
            if not isinstance(keys, dict) or not all(isinstance(v, str) and v for v in keys.values()):
                raise ValueError('JWT_KEYS must be a JSON object {"kid": "secret", ...}')
            return keys
        secret = self.jwt_secret or _read_secret_file(self.data_dir / "jwt_secret")
        return {"": secret} if secret else {}

    @property
    def model_names(self) -> list[str]:
        return [m.strip() for m in self.default_models.split(",") if m.strip()]

    @property
    def webhook_hosts(self) -> set[str]:
        return {h.strip().lower() for h in self.webhook_allowed_hosts.split(",") if h.strip()}

    @property
    def url_fetch_hosts(self) -> set[str]:
        return {h.strip().lower() for h in self.url_fetch_allowed_hosts.split(",") if h.strip()}

    @property
    def formats(self) -> set[str]:
        return {f.strip().lower() for f in self.allowed_formats.split(",") if f.strip()}


def usable_cores() -> int:
    """Cores this process may use: the CPU affinity mask, capped by a cgroup v2 CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


_secret_files: dict[Path, tuple[float, str]] = {}


def _read_secret_file(path: Path) -> str:
    """The embedded mode's generated secret, read again only when the file changes (it is asked for
    on every request)."""
    try:
        mtime = path.stat().st_mtime
        cached = _secret_files.get(path)
        if cached is None or cached[0] != mtime:
            _secret_files[path] = cached = (mtime, path.read_text().strip())
        return cached[1]
    except OSError:
        return ""


def load_settings(**overrides: object) -> Settings:
    """Read the environment, raising SettingsError with every bad variable named."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper() or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once (tests call ``get_settings.cache_clear()``)."""
    return load_settings()
