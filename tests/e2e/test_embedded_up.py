"""`deepscreen up` with nothing configured: SQLite, the filesystem broker, local blobs, and real
gunicorn / worker / beat child processes; Ctrl-C stops them all."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest
import requests

from tests.conftest import free_port, jpeg_bytes
from tests.support.processes import ROOT, answers_200, embedded_env, wait_for

pytestmark = pytest.mark.e2e


def test_up_serves_a_real_verdict_and_stops_cleanly(tmp_path, model_repo):  # type: ignore[no-untyped-def]
    port = free_port()
    env = embedded_env(tmp_path / "data", model_repo, f"127.0.0.1:{port}")
    log = (tmp_path / "up.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "up", "--no-build-models"], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def output() -> str:
            log.flush()
            return (tmp_path / "up.log").read_text()

        token = wait_for(lambda: re.search(r"DEEPSCREEN_TOKEN=(\S+)", output()), 60, what="the dev token").group(1)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers_200(f"{base}/ready"), 60, what="/ready")
        headers = {"Authorization": f"Bearer {token}"}
        accepted = requests.post(f"{base}/v1/jobs", headers=headers, timeout=30,
                                 files={"file": ("a.jpg", jpeg_bytes((100, 100), seed=5))})
        assert accepted.status_code == 202, accepted.text

        def finished():  # type: ignore[no-untyped-def]
            body = requests.get(base + accepted.json()["status_url"], headers=headers, timeout=10).json()
            return body if body["status"] in ("succeeded", "failed") else None

        job = wait_for(finished, 90, what="the embedded job")
        assert job["status"] == "succeeded", job
        assert 0.0 <= job["results"]["nsfw"]["score"] <= 1.0
        held = requests.post(f"{base}/v1/jobs", headers=headers, params={"wait": "30"}, timeout=60,
                             files={"file": ("b.jpg", jpeg_bytes((100, 100), seed=6))})
        assert held.status_code == 200, held.text  # submit and wait: the verdict in the POST's answer
        assert held.json()["status"] == "succeeded" and 0.0 <= held.json()["results"]["nsfw"]["score"] <= 1.0
        assert (tmp_path / "data" / "deepscreen.db").exists()
        assert any((tmp_path / "data" / "blobs").rglob("*"))

        children = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 4  # up itself, gunicorn, celery worker, celery beat (and their children)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(40) == 0
        wait_for(lambda: not subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).stdout, 20,
                 what="every child to exit")
        assert "stopped" in output()
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["pkill", "-9", "-g", str(proc.pid)], capture_output=True)
        log.close()
