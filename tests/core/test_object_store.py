"""Both object stores behave alike; the S3 one talks HTTP to a real S3 server (moto's)."""

from __future__ import annotations

import pytest

from core.object_store import BlobMissing, LocalStore, S3Store, StorageUnavailable, key_for


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, s3_server):  # type: ignore[no-untyped-def]
    if request.param == "local":
        return LocalStore(tmp_path / "blobs")
    s3 = S3Store("store-test", "p", s3_server.url, "us-east-1")
    s3.ensure_bucket()
    return s3


def test_put_get_exists_delete(store) -> None:  # type: ignore[no-untyped-def]
    key = key_for("ab" * 32)
    assert not store.exists(key)
    store.put(key, b"hello", "image/png")
    assert store.exists(key) and store.get(key) == b"hello"
    store.delete(key)
    with pytest.raises(BlobMissing):
        store.get(key)
    store.ping()


def test_local_store_refuses_paths_outside_its_root(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BlobMissing):
        LocalStore(tmp_path).get("../../etc/passwd")


def test_unreachable_s3_is_unavailable_not_missing() -> None:
    dead = S3Store("bucket", "", "http://127.0.0.1:9", "us-east-1")
    with pytest.raises(StorageUnavailable):
        dead.ping()
    with pytest.raises(StorageUnavailable):
        dead.get("k")
