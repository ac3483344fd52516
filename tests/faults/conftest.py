"""Fixtures for the fault tests: each module gets the service environment pointed at the slow model
and the fault queue (its ``FAULT_SETTINGS`` dict overrides settings), and its own worker process, so
the session's fixtures (and their worker) never see a killed process or a fault-test job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.fault_support import FaultWorker, build_slow_repo, fault_env, flush_fault_redis
from tests.support.environment import apply_env
from tests.support.processes import Control


@pytest.fixture(scope="session")
def slow_repo(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_slow_repo(model_repo, tmp_path_factory.mktemp("slow_repository"))


@pytest.fixture(scope="module")
def faults_env(request: pytest.FixtureRequest, service_env: dict[str, str], slow_repo: Path) -> Iterator[dict]:
    env = fault_env(service_env, slow_repo, **getattr(request.module, "FAULT_SETTINGS", {}))
    flush_fault_redis(env["BROKER_URL"])
    with apply_env(env):
        yield env
    flush_fault_redis(env["BROKER_URL"])


@pytest.fixture(scope="module")
def fault_worker(faults_env: dict[str, str], request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultWorker]:
    name = request.module.__name__.rsplit(".", 1)[-1]
    worker = FaultWorker(faults_env, tmp_path_factory.mktemp("fault-worker") / f"{name}.log", name=name)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture()
def fault_app(faults_env: dict[str, str]):  # type: ignore[no-untyped-def]
    from web.app import create_app

    return create_app()


@pytest.fixture()
def fault_client(fault_app):  # type: ignore[no-untyped-def]
    return fault_app.test_client()


@pytest.fixture(scope="module")
def fault_control(faults_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Control]:
    """Beat and the control queue (repairs, webhooks) in their own process, as `deepscreen beat`
    runs them, sweeping every second."""
    control = Control({**faults_env, "SWEEP_INTERVAL_SECONDS": "1"}, tmp_path_factory.mktemp("fault-control"))
    control.start()
    yield control
    control.stop()
