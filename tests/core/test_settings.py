"""Settings: embedded defaults, and bad values named in the error."""

from __future__ import annotations

import pytest

from core.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):  # type: ignore[no-untyped-def]
    """Other tests export service-mode variables for the session; these tests need the defaults."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_embedded_defaults_live_under_data_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'deepscreen.db'}"
    assert settings.broker_url == "filesystem://" and settings.embedded
    assert settings.storage_url == f"file://{tmp_path / 'blobs'}"
    assert settings.result_backend.startswith("db+sqlite:///")


def test_service_urls_are_taken_as_given() -> None:
    settings = load_settings(broker_url="redis://h:6379/0", redis_url="redis://h:6379/1",
                             storage_url="s3://bucket/prefix")
    assert not settings.embedded
    assert settings.result_backend == "redis://h:6379/1"


@pytest.mark.parametrize("env, fragment", [
    ({"MAX_UPLOAD_BYTES": "lots"}, "MAX_UPLOAD_BYTES"),
    ({"STORAGE_URL": "ftp://x"}, "STORAGE_URL"),
    ({"JWT_KEYS": '{"a": "x"}', "JWT_ACTIVE_KID": "b"}, "JWT_ACTIVE_KID"),
    ({"JWT_ALGORITHM": "none"}, "JWT_ALGORITHM"),
])
def test_bad_values_are_named(monkeypatch, env, fragment) -> None:  # type: ignore[no-untyped-def]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=fragment):
        load_settings()


@pytest.mark.parametrize("cores, env, expected", [
    (2, {}, 2),  # 2 inference processes of 1 ONNX thread: one core each, and the floor of 2
    (16, {"WORKER_CONCURRENCY": "4"}, 4),
    (16, {"ONNX_INTRA_OP_THREADS": "16"}, 8),  # one process with every core: capped at 8
    (64, {"WORKER_CONCURRENCY": "1"}, 8),
    (2, {"FETCH_THREADS": "5"}, 5),  # an explicit value is taken as given
])
def test_fetch_threads_follow_the_cores_each_process_has(monkeypatch, cores, env, expected) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("core.settings.usable_cores", lambda: cores)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert load_settings().fetch_thread_count == expected
