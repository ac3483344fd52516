"""The client is for scripts, bots and other people's servers: importing it must not pull in the
server (Flask, SQLAlchemy, Celery, ONNX Runtime, our core/web/workers/ml/cli). Checked twice: on the
source (every import, module level or lazy) and in a fresh interpreter's sys.modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.test_architecture import _imports, _sources

ROOT = Path(__file__).resolve().parents[2]
SERVER = ("core", "web", "workers", "ml", "cli", "flask", "werkzeug", "sqlalchemy", "celery", "kombu", "redis",
          "boto3", "onnxruntime", "numpy", "PIL", "cv2", "jwt", "alembic", "psycopg", "click", "tqdm", "torch")
ALLOWED_THIRD_PARTY = ("requests",)


def test_client_source_imports_only_the_standard_library_requests_and_itself() -> None:
    modules = _sources("deepscreen")
    assert "deepscreen.client.client" in modules
    stdlib = sys.stdlib_module_names
    for name, path in modules.items():
        for imported in _imports(path):
            top = imported.split(".")[0]
            assert top in stdlib or top in ALLOWED_THIRD_PARTY or top == "deepscreen" or top == "__future__", \
                f"{name} imports {imported}"


def test_importing_the_client_loads_none_of_the_server() -> None:
    probe = ("import json, sys; import deepscreen.client; from deepscreen.client import Client; "
             "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                                       check=True, timeout=60).stdout)
    assert "requests" in loaded
    offenders = [m for m in loaded if m.split(".")[0] in SERVER]
    assert offenders == []
