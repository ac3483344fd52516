"""The benchmarks' own virtualenv (.venv-bench, git-ignored) for tools that must not touch the project's
pins: BentoML (the serving peer) and py-spy (the profiler).

It is made from the base interpreter, and a ``.pth`` file adds the project venv's site-packages AFTER
its own: the project's packages (onnxruntime, numpy, opencv, …) are used as they are, and whatever
BentoML needs that the project lacks, or needs in another version, is installed into .venv-bench only.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.common import ROOT

VENV = ROOT / ".venv-bench"
PACKAGES = ("bentoml==1.4.40", "py-spy==0.4.3")
PTH = "zz_deepscreen_main.pth"


def python() -> Path:
    return VENV / "bin" / "python"


def _site_packages(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def _installed(requirement: str) -> bool:
    name, _, version = requirement.partition("==")
    probe = ("import importlib.metadata as m, sys; "
             f"sys.exit(0 if m.version({name!r}) == {version!r} else 1)")
    return subprocess.run([str(python()), "-c", probe], capture_output=True).returncode == 0


def ensure(packages: tuple[str, ...] = PACKAGES) -> Path:
    """Create .venv-bench if missing and install ``packages`` into it (from PyPI); returns its python."""
    if not python().exists():
        subprocess.run([sys.base_prefix + "/bin/python3", "-m", "venv", str(VENV)], check=True)
        main_site = _site_packages(Path(sys.prefix))
        (_site_packages(VENV) / PTH).write_text(f"import site; site.addsitedir({str(main_site)!r})\n")
    missing = [p for p in packages if not _installed(p)]
    if missing:
        subprocess.run([str(python()), "-m", "pip", "install", "-q", *missing], check=True)
    return python()


def tool(name: str) -> Path:
    """A console script of .venv-bench (``py-spy``), installing what is missing first."""
    ensure()
    return VENV / "bin" / name
