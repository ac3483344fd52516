"""End-to-end throughput against offline model throughput, measured side by side in one run.

Starts the embedded stack (gunicorn + one Celery worker process, SQLite, filesystem broker, local
blobs) in a temp folder, submits N distinct images over HTTP, waits for every verdict, and compares
with the same model called offline on the same images in this process, batch 1, one thread (as the
worker runs it). The ratio is the cost of the road: HTTP, validation, storage, broker, database.

    python bench/end_to_end.py [--images 60] [--model nsfw] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def images(n: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        pixels = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def _warmup_image() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def offline(model: str, repo: Path, data: list[bytes]) -> float:
    from ml.image_decode import decode_image
    from ml.repository import ModelRepository

    pipeline = ModelRepository(repo).load(model, ["CPUExecutionProvider"], threads=1)
    pipeline.predict([decode_image(data[0], 10**8)])  # warm-up
    start = time.perf_counter()
    for blob in data:
        pipeline.predict([decode_image(blob, 10**8)])
    return len(data) / (time.perf_counter() - start)


def end_to_end(model: str, repo: Path, data: list[bytes], concurrency: int) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="ds-bench-"))
    port = 18000 + os.getpid() % 1000
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "BROKER_", "REDIS_", "STORAGE_"))}
    env.update(DATA_DIR=str(tmp), MODEL_REPOSITORY=str(repo), WEB_BIND=f"127.0.0.1:{port}", DEFAULT_MODELS=model,
               LOG_LEVEL="WARNING", RATE_LIMIT_DEFAULT="100000/minute", RATE_LIMIT_SUBMIT="100000/minute")
    log = tmp / "up.log"
    with log.open("w") as out:  # a file, not a pipe: an unread pipe would block gunicorn's access log
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "up", "--no-build-models"], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        token = ""
        for _ in range(240):
            if match := re.search(r"DEEPSCREEN_TOKEN=(\S+)", log.read_text()):
                token = match.group(1)
                break
            time.sleep(0.5)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(120):
            try:
                if requests.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        warm = requests.post(f"{base}/v1/jobs", headers=headers, files={"file": ("w.jpg", _warmup_image())})
        _wait(base, headers, [warm.json()["status_url"]])

        def submit(blob: bytes) -> str:
            response = requests.post(f"{base}/v1/jobs", headers=headers, files={"file": ("x.jpg", blob)}, timeout=60)
            response.raise_for_status()
            return response.json()["status_url"]

        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            urls = list(pool.map(submit, data))
        _wait(base, headers, urls)
        return len(data) / (time.perf_counter() - start)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)


def _wait(base: str, headers: dict[str, str], urls: list[str]) -> None:
    pending = set(urls)
    deadline = time.monotonic() + 600
    while pending and time.monotonic() < deadline:
        for url in list(pending):
            body = requests.get(base + url, headers=headers, timeout=30).json()
            if body["status"] in ("succeeded", "failed"):
                if body["status"] == "failed":
                    raise RuntimeError(f"job failed: {body['error']}")
                pending.discard(url)
        time.sleep(0.1)
    if pending:
        raise RuntimeError(f"{len(pending)} jobs did not finish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--model", default="nsfw")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repository", type=Path,
                        default=Path(os.environ.get("MODEL_REPOSITORY", ROOT / "model_repository")))
    args = parser.parse_args()
    data = images(args.images)
    off = offline(args.model, args.repository, data)
    e2e = end_to_end(args.model, args.repository, data, args.concurrency)
    print(f"model {args.model}, {args.images} distinct 256x256 JPEGs, {os.cpu_count()} cores")
    print(f"{'path':<44} {'images/s':>9}")
    print(f"{'offline: decode + predict, batch 1, 1 thread':<44} {off:>9.1f}")
    print(f"{'end to end: HTTP → web → broker → 1 worker':<44} {e2e:>9.1f}")
    print(f"ratio end-to-end / offline: {e2e / off:.2f}")


if __name__ == "__main__":
    main()
