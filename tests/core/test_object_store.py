"""Both object stores behave alike; the S3 one talks HTTP to a real S3 server (moto's)."""

from __future__ import annotations

import pytest

from core.object_store import BlobMissing, LocalStore, S3Store, StorageUnavailable, key_for


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, service_env):  # type: ignore[no-untyped-def]
    """(service_env: the S3 server's URL and its credentials in the environment, whatever ran before.)"""
    if request.param == "local":
        return LocalStore(tmp_path / "blobs")
    s3 = S3Store("store-test", "p", service_env["S3_ENDPOINT_URL"], "us-east-1")
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


def test_put_many_stores_every_blob(store) -> None:  # type: ignore[no-untyped-def]
    """A batch's files: S3 PUTs them from several threads at once, the folder one after another."""
    blobs = [(key_for(f"{n:02x}" * 32), bytes([n]) * (n + 1), "image/jpeg") for n in range(12)]
    store.put_many(blobs)
    assert [store.get(key) for key, _, _ in blobs] == [data for _, data, _ in blobs]


def test_local_store_refuses_paths_outside_its_root(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = LocalStore(tmp_path / "blobs")
    for key in ("../../etc/passwd", "/etc/passwd", "sha256/../../x", "..", "sha256/ab/../../../blobs2/x"):
        with pytest.raises(BlobMissing):
            store.get(key)
        with pytest.raises(BlobMissing):
            store.put(key, b"x", "image/png")
    assert not (tmp_path / "x").exists() and not (tmp_path / "blobs2").exists()
    store.put("sha256/ab/../cd/x", b"inside", "image/png")  # stays under the root: allowed
    assert (tmp_path / "blobs" / "sha256" / "cd" / "x").read_bytes() == b"inside"


def test_unreachable_s3_fails_a_put_many_with_unavailable() -> None:
    dead = S3Store("bucket", "", "http://127.0.0.1:9", "us-east-1")
    with pytest.raises(StorageUnavailable):
        dead.put_many([(key_for("cd" * 32), b"a", "image/png"), (key_for("ef" * 32), b"b", "image/png")])


def test_unreachable_s3_is_unavailable_not_missing() -> None:
    dead = S3Store("bucket", "", "http://127.0.0.1:9", "us-east-1")
    with pytest.raises(StorageUnavailable):
        dead.ping()
    with pytest.raises(StorageUnavailable):
        dead.get("k")
