"""Provider truth on this CPU machine: a worker that asks for CUDA and gets the CPU says so, reports the
provider its sessions really got, and runs the CPU's files (INT8 / FP32), never the FP16 ones.

No GPU can run here, so the one stand-in is ONNX Runtime's list of available providers, made to
include CUDA as an onnxruntime-gpu build whose CUDA libraries fail to load would: the session is
still really created with CUDA asked first, and ONNX Runtime's real fallback decides what it gets.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from ml import runtime
from ml.repository import ModelRepository
from ml.runtime import CPU, CUDA, ProviderError, choose_providers


@pytest.fixture()
def cuda_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ort.get_available_providers()
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [CUDA, *real])


def test_asking_for_cuda_reports_the_cpu_and_uses_the_cpu_variants(cuda_listed: None) -> None:
    repo = ModelRepository(Path(__import__("os").environ.get("TEST_MODEL_REPOSITORY", "model_repository")))
    providers = choose_providers("CUDAExecutionProvider,CPUExecutionProvider")
    assert providers == [CUDA, CPU]
    for name, version in (("deepfake", "1"), ("deepfake", "2")):  # FP16 for CUDA; v1 INT8 too, v2 FP32
        manifest = repo.manifest(name, version)
        assert any(role.endswith(".fp16") for role in manifest.files), manifest.files
        pipeline = repo.load(name, providers, 1, version)
        truth = pipeline.runtime()
        assert truth["requested"] == CUDA and truth["provider"] == CPU
        assert all(s["provider"] == CPU and s["precision"] in ("int8", "fp32") for s in truth["sessions"].values())


def test_cuda_alone_is_refused_without_cuda() -> None:
    with pytest.raises(ProviderError):
        choose_providers("CUDAExecutionProvider")
    assert choose_providers("auto") == [CPU]  # auto on a CPU build: no complaint


def test_a_worker_asked_for_cuda_alone_refuses_to_start(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path), "ONNX_PROVIDERS": "CUDAExecutionProvider"}
    done = subprocess.run([sys.executable, "-m", "cli.main", "worker"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode != 0
    assert "no CUDA provider" in done.stderr and "CPUExecutionProvider" in done.stderr
