"""Blob storage behind one small interface: a local folder (embedded) or S3/MinIO (service mode).

Keys are content addresses (``sha256/ab/abcdef…``), so a blob is written once however often it is
uploaded, and a retried write is harmless.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

from core.settings import Settings, get_settings

PUT_THREADS = 8  # a batch's PUTs in flight at once (botocore's pool holds 10 connections)


class StorageUnavailable(RuntimeError):
    """The store could not be reached; the caller should retry later (web: 503)."""


class BlobMissing(KeyError):
    """The key does not exist (the upload expired or was never written)."""


def key_for(sha256: str) -> str:
    return f"sha256/{sha256[:2]}/{sha256}"


class ObjectStore(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def put_many(self, blobs: list[tuple[str, bytes, str]]) -> None:
        """Several ``(key, data, content_type)`` PUTs (a batch's new files); the first failure raises."""
        for key, data, content_type in blobs:
            self.put(key, data, content_type)

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def ping(self) -> None:
        """Raise StorageUnavailable unless the store answers."""


class LocalStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        self._base = os.path.realpath(root)

    def _path(self, key: str) -> Path:
        """The key's file, refused when the key would leave the root (``..``, an absolute path). A
        lexical check: nothing but this class writes under the root, so no link there leads out."""
        path = os.path.normpath(os.path.join(self._base, key))
        if not path.startswith(self._base + os.sep):
            raise BlobMissing(key)
        return Path(path)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a reader never sees half a blob.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageUnavailable(f"local store: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise BlobMissing(key) from exc
        except OSError as exc:
            raise StorageUnavailable(f"local store: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def ping(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise StorageUnavailable(f"local store {self.root} is not writable")
        except OSError as exc:
            raise StorageUnavailable(f"local store: {exc}") from exc


class S3Store(ObjectStore):
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None, region: str) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # Short timeouts and few retries: a dead store must turn into a 503 quickly, not hang a worker.
        # Checksums only where S3 requires them: keys are sha256 content addresses already, and
        # botocore's CRC on every PUT and GET cost ~1 ms of CPU per job (bench/profile_road.py).
        config = Config(
            connect_timeout=3, read_timeout=20, retries={"max_attempts": 2, "mode": "standard"},
            request_checksum_calculation="when_required", response_checksum_validation="when_required",
        )
        self._client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise BlobMissing(kwargs.get("Key", "")) from exc
            raise StorageUnavailable(f"s3: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"s3: {exc}") from exc

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._call(self._client.put_object, Key=self._key(key), Body=data, ContentType=content_type)

    def put_many(self, blobs: list[tuple[str, bytes, str]]) -> None:
        """Up to PUT_THREADS PUTs at once: each is a round trip to the store, so a batch's files are
        stored in about the time of the slowest, not of all of them in turn."""
        if len(blobs) < 2:
            super().put_many(blobs)
            return
        with ThreadPoolExecutor(max_workers=min(PUT_THREADS, len(blobs)), thread_name_prefix="s3-put") as pool:
            list(pool.map(lambda blob: self.put(*blob), blobs))

    def get(self, key: str) -> bytes:
        body = self._call(self._client.get_object, Key=self._key(key))["Body"]
        return body.read()

    def exists(self, key: str) -> bool:
        try:
            self._call(self._client.head_object, Key=self._key(key))
        except BlobMissing:
            return False
        return True

    def delete(self, key: str) -> None:
        self._call(self._client.delete_object, Key=self._key(key))

    def ping(self) -> None:
        try:
            self._call(self._client.head_bucket)
        except BlobMissing as exc:
            raise StorageUnavailable(f"s3: bucket {self.bucket!r} does not exist") from exc

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (used by set-up commands and tests, not at import)."""
        if not self.bucket_exists():
            self._call(self._client.create_bucket)

    def bucket_exists(self) -> bool:
        try:
            self.ping()
        except StorageUnavailable:
            return False
        return True


def store_from_settings(settings: Settings) -> ObjectStore:
    parsed = urlparse(settings.storage_url)
    if parsed.scheme == "file":
        return LocalStore(Path(parsed.path))
    return S3Store(parsed.netloc, parsed.path, settings.s3_endpoint_url or None, settings.s3_region)


@cache
def get_store() -> ObjectStore:
    return store_from_settings(get_settings())
