"""The object stores a backup copies from and restores to: an S3 bucket (prefix included) or a folder.

Apart from core.object_store on purpose: a backup streams whole blobs to and from files and lists
the store, which the service's read/write path never does.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


class BackupError(RuntimeError):
    """The backup or restore cannot go on; the message says what to do."""


class Blobs(Protocol):
    """What a backup needs from a store: list, stream to a file, stream from a file."""

    def list(self) -> Iterator[tuple[str, int]]: ...
    def download(self, key: str, path: Path) -> None: ...
    def upload(self, path: Path, key: str) -> None: ...
    def size(self, key: str) -> int | None: ...
    def ensure(self) -> None: ...


@dataclass
class S3Blobs:
    bucket: str
    prefix: str
    endpoint_url: str | None
    region: str

    def __post_init__(self) -> None:
        import boto3
        from botocore.config import Config

        self.prefix = self.prefix.strip("/")
        self._client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                                    config=Config(retries={"max_attempts": 8, "mode": "standard"}))

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def list(self) -> Iterator[tuple[str, int]]:
        start = f"{self.prefix}/" if self.prefix else ""
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
            for item in page.get("Contents", []):
                yield item["Key"][len(start):], int(item["Size"])

    def download(self, key: str, path: Path) -> None:
        self._client.download_file(self.bucket, self._full(key), str(path))

    def upload(self, path: Path, key: str) -> None:
        self._client.upload_file(str(path), self.bucket, self._full(key))

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return int(self._client.head_object(Bucket=self.bucket, Key=self._full(key))["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def ensure(self) -> None:
        from core.object_store import S3Store

        S3Store(self.bucket, self.prefix, self.endpoint_url, self.region).ensure_bucket()


@dataclass
class LocalBlobs:
    root: Path

    def list(self) -> Iterator[tuple[str, int]]:
        for path in sorted(self.root.rglob("*")) if self.root.is_dir() else []:
            if path.is_file() and not path.name.startswith(".tmp-"):
                yield path.relative_to(self.root).as_posix(), path.stat().st_size

    def download(self, key: str, path: Path) -> None:
        shutil.copyfile(self.root / key, path)

    def upload(self, path: Path, key: str) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)

    def size(self, key: str) -> int | None:
        path = self.root / key
        return path.stat().st_size if path.is_file() else None

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)


def blobs_for(storage_url: str, endpoint_url: str | None, region: str) -> Blobs:
    """The store STORAGE_URL names (same URL forms as core.object_store.store_from_settings)."""
    parsed = urlparse(storage_url)
    if parsed.scheme == "file":
        return LocalBlobs(Path(parsed.path))
    if parsed.scheme == "s3":
        return S3Blobs(parsed.netloc, parsed.path, endpoint_url or None, region)
    raise BackupError(f"unsupported STORAGE_URL {storage_url!r}")
