"""The benchmarks keep working: each script runs in a tiny configuration and prints its table.

No figure is asserted (speed is measured in bench/, not in tests): only that every script runs end to
end against the real models, real processes and real servers, and reports what it should (rows,
targets, GPU rows marked not measured, nothing failed). The helpers the figures rest on (CPU time from
/proc, the profile summary, the photos) are checked for behaviour.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import photos
from bench.common import ROOT
from bench.proc_cpu import CpuSampler, read, tree, vm_hwm_kib
from bench.profile_road import categorise, summarise


def run_bench(args: list[str], repo: Path, timeout: float = 240, **env: str) -> str:
    completed = subprocess.run([sys.executable, *args, "--repository", str(repo)], cwd=ROOT, capture_output=True,
                               text=True, timeout=timeout, env={**os.environ, "MODEL_REPOSITORY": str(repo), **env})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    out = completed.stdout
    assert "command: .venv/bin/python" in out or "model " in out, out
    return out


# --- helpers -----------------------------------------------------------------------------------

def test_photos_are_distinct_512px_jpegs_with_a_face_each(model_repo: Path) -> None:
    from ml.decode import DecodeLimits, decode
    from ml.repository import ModelRepository

    blobs = photos.face_photos(6, seed=3)
    assert len(set(blobs)) == 6 and all(b[:2] == b"\xff\xd8" for b in blobs)
    assert photos.face_photos(6, seed=3) == blobs  # seeded
    items = [decode(b, "jpeg", DecodeLimits()) for b in blobs]
    assert all(item.frames[0].shape == (512, 512, 3) for item in items)
    pipeline = ModelRepository(model_repo).load("deepfake", ["CPUExecutionProvider"], 1)
    assert all(o.label != "no_face" for o in pipeline.predict(items))
    faceless = photos.faceless_images(4)
    assert len(set(faceless)) == 4
    assert all(o.label == "no_face" for o in pipeline.predict([decode(b, "jpeg", DecodeLimits()) for b in faceless]))


def test_cpu_sampler_counts_a_child_process_cpu_time() -> None:
    spin = "import time\nwhile time.process_time() < 0.6: pass\ntime.sleep(0.5)"
    proc = subprocess.Popen([sys.executable, "-c", spin])
    try:
        with CpuSampler({"child": lambda snap: tree(snap, [proc.pid]), "nobody": lambda snap: []},
                        interval=0.05) as sampler:
            proc.wait(60)
            time.sleep(0.1)
    finally:
        proc.kill()
    # the child's CPU time up to its last sample (it sleeps its last half second, so nothing is lost)
    assert 0.5 <= sampler.seconds["child"] < 5, sampler.seconds
    assert sampler.seconds["nobody"] == 0
    me = read(os.getpid())
    assert me is not None and me.cpu > 0 and (vm_hwm_kib(os.getpid()) or 0) > 10_000


def test_profile_summary_attributes_samples_per_job(tmp_path: Path) -> None:
    raw = tmp_path / "web-1.txt"
    raw.write_text(
        'process 1:"python -m gunicorn";Flask.wsgi_app (flask/app.py:1511);create (web/jobs.py:50);'
        "Session.execute (sqlalchemy/orm/session.py:2300);Connection.wait (psycopg/connection.py:900) 30\n"
        'process 1:"python -m gunicorn";Flask.wsgi_app (flask/app.py:1511);create (web/jobs.py:50);'
        "S3Store.put (core/object_store.py:80);_make_request (botocore/endpoint.py:100) 10\n")
    assert categorise(["create (web/jobs.py:50)", "wait (psycopg/connection.py:900)"]).startswith("database")
    categories, leaves, ours = summarise(tmp_path, rate=100, jobs=10)
    by_name = {row[1]: row[2] for row in categories}
    assert by_name["database (SQLAlchemy, psycopg, sqlite)"] == pytest.approx(30.0)  # 30 samples x 10 ms / 10 jobs
    assert by_name["object store (boto3/botocore/urllib3)"] == pytest.approx(10.0)
    assert {row[1]: row[2] for row in ours}["web/jobs.py:create"] == pytest.approx(40.0)
    assert leaves[0][2] == pytest.approx(30.0)


# --- scripts, quick ----------------------------------------------------------------------------

def test_deepfake_offline_grid(model_repo: Path) -> None:
    out = run_bench(["bench/deepfake_offline.py", "--images", "4", "--processes", "1,2", "--threads", "1",
                     "--batches", "1,2", "--model-version", "1,99"], model_repo)
    assert out.count("| deepfake/1 |") == 4 and "best" in out
    assert "| deepfake/99 | - | - | - | not built in" in out
    assert out.count("not measured (no GPU lent)") == 2 and "x the issue's baseline of 67.5" in out


def test_gpu_check_reports_the_cpu_path_without_a_gpu(model_repo: Path) -> None:
    out = run_bench(["bench/gpu_check.py", "--images", "4", "--batches", "1,2", "--repeats", "1"], model_repo)
    assert "provider truth, CPU run:" in out and '"provider": "CPUExecutionProvider"' in out
    assert "GPU rows: not measured (no CUDA EP here)" in out or "GPU best" in out
    assert re.search(r"\| CPU EP \((int8|fp32)\), 1 process x", out)


def test_worker_memory(model_repo: Path) -> None:
    out = run_bench(["bench/worker_memory.py", "--batches", "1,2", "--models", "deepfake"], model_repo)
    rows = [line for line in out.splitlines() if line.startswith("| photo |")]
    assert len(rows) == 2 and all(line.rstrip().endswith("| 0 |") for line in rows), out


def test_models_table(model_repo: Path) -> None:
    out = run_bench(["-m", "bench.models", "--models", "nsfw", "--repeats", "1", "--threads", "1"], model_repo)
    assert "nsfw/1" in out and "error" not in out


# --- scripts through the whole stack -------------------------------------------------------------

@pytest.mark.slow
def test_end_to_end_both_modes(model_repo: Path) -> None:
    out = run_bench(["bench/end_to_end.py", "--images", "4", "--concurrency", "2", "--processes", "1",
                     "--threads", "1", "--batches", "2"], model_repo, timeout=400)
    assert "| offline best: 1 processes x 1 threads, batch 2" in out
    assert "| end to end, embedded" in out and "| end to end, service" in out
    assert "failed 0" in out and "(4/4 with a face)" in out


@pytest.mark.slow
def test_worker_drain_both_modes(model_repo: Path) -> None:
    out = run_bench(["bench/worker_drain.py", "--images", "18", "--processes", "1", "--batches", "2",
                     "--mode", "both"], model_repo, timeout=400)
    assert "| offline best: 1 processes x 1 threads, batch 2" in out
    rows = [line.split("|") for line in out.splitlines() if "a filled queue drained" in line]
    assert [row[1].split(":")[0].strip() for row in rows] == ["embedded", "service"], out
    assert all(float(row[2]) > 0 and float(row[4]) > 0 and row[5].strip() == "0" for row in rows), out


@pytest.mark.slow
def test_verdict_latency(model_repo: Path) -> None:
    out = run_bench(["bench/verdict_latency.py", "--images", "3", "--clients", "1,2", "--mode", "embedded"],
                    model_repo, timeout=300)
    assert "| embedded | 1 |" in out and "| embedded | 2 |" in out and "finished -> answer ms p50 / p90" in out


@pytest.mark.slow
def test_scan_folder(model_repo: Path) -> None:
    out = run_bench(["bench/scan_folder.py", "--images", "5", "--batch-sizes", "1,2", "--mode", "embedded"],
                    model_repo, timeout=300)
    assert "| embedded | 1 |" in out and "| embedded | 2 |" in out and "vs --batch-size 1" in out


@pytest.mark.slow
def test_road_service(model_repo: Path) -> None:
    # submit-and-wait clients here (POST ?wait=); the end-to-end smoke covers the default long polls
    out = run_bench(["bench/road.py", "--jobs", "16", "--concurrency", "4", "--polling", "submit"], model_repo,
                    timeout=300)
    assert "| service |" in out and "PostgreSQL backends (this database)" in out and "redis-server" in out
    assert "load generator" in out and "| no |" in out


@pytest.mark.slow
def test_bentoml_peer(model_repo: Path) -> None:
    # bulk clients: several images in one BentoML request, POST /v1/batches + one long poll per batch here
    out = run_bench(["bench/bentoml_peer.py", "--images", "4", "--concurrency", "2", "--mode", "embedded",
                     "--polling", "batch"], model_repo, timeout=600)
    assert "| BentoML: adaptive batching" in out and "| deepscreen embedded:" in out and "failed 0" in out
    assert "16 image(s) per request" in out and "(batch polls)" in out


@pytest.mark.slow
def test_profile_road(model_repo: Path, tmp_path: Path) -> None:
    out = run_bench(["bench/profile_road.py", "--jobs", "16", "--concurrency", "4", "--keep", str(tmp_path)],
                    model_repo, timeout=300)
    assert "| web |" in out and "| workers |" in out and list(tmp_path.glob("web-*.txt"))


@pytest.mark.slow
def test_worker_kills(model_repo: Path) -> None:
    db = os.environ.get("TEST_FAULT_REDIS_DB", "13")  # the fault tests' own database (flushed by them too)
    completed = subprocess.run([sys.executable, "bench/worker_kills.py", "--kills", "1", "--batch", "3",
                                "--redis-url", f"redis://127.0.0.1:6379/{db}"], cwd=ROOT, capture_output=True,
                               text=True, timeout=300, env={**os.environ, "MODEL_REPOSITORY": str(model_repo)})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert '"lost": 0' in completed.stdout and '"duplicates": 0' in completed.stdout


def test_queue_sql_reports_each_step_on_both_databases() -> None:
    completed = subprocess.run([sys.executable, "bench/queue_sql.py", "--jobs", "16", "--batch", "4"], cwd=ROOT,
                               capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    rows = [line for line in completed.stdout.splitlines() if line.startswith(("| postgresql |", "| sqlite |"))]
    assert len(rows) == 2 and all(float(line.split("|")[-2]) > 0 for line in rows), completed.stdout


def test_multipart_parse_compares_both_decoders() -> None:
    completed = subprocess.run([sys.executable, "bench/multipart_parse.py", "--rounds", "3", "--items", "1,2"],
                               cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    rows = [line.split("|") for line in completed.stdout.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rows) == 2 and all(float(row[3]) > 0 and float(row[4]) > 0 for row in rows), completed.stdout
