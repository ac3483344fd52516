"""The deepfake ml stage offline: images/s over processes x ONNX Runtime threads x batch, decode included.

Each configuration runs real OS processes (spawned, each loading the model version itself, as worker
processes do); every process takes its share of the same distinct 512 px one-face JPEGs, and for
each batch size all of them start together (a barrier): images/s = all images / (last end - first
start). Every batch is decoded from JPEG bytes with ``ml.decode.decode`` (what a worker runs), then
``pipeline.predict`` once for the batch. The best row per model version is "the best offline rate of
the same model" that bench/end_to_end.py and bench/bentoml_peer.py compare against.

    .venv/bin/python bench/deepfake_offline.py [--images 96] [--processes 1,2] [--threads 1,2]
        [--batches 1,8,32] [--model-version 1,2] [--repeats 1] [--json out.json]

The GPU targets of issue 7 are printed as rows too; this script measures the CPU EP only (GPU:
bench/gpu_check.py on a machine with one).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Shared, add_repository_argument, header, int_list, own_cpu_seconds, table
from bench.photos import face_photos

BASELINE = 67.5  # issue 7: the best offline rate on the 2-core machine before the rewrite (2 x 1-thread processes)
CPU_TARGET = 3.0  # ≥ 3x that baseline
PROVIDERS = ["CPUExecutionProvider"]


@dataclass
class Row:
    model: str  # name/version
    processes: int
    threads: int
    batch: int
    images: int
    seconds: float
    cpu_seconds: float  # CPU time of the measuring processes during the timed part
    with_face: int  # items the detector found a face in (a sanity check on the inputs)

    @property
    def rate(self) -> float:
        return self.images / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1e3 * self.cpu_seconds / self.images


def _child(conn: Connection, repo: str, model: str, version: str | None, threads: int, share: list[bytes],
           batches: list[int], repeats: int, barrier: Barrier) -> None:
    from ml.decode import DecodeLimits, decode
    from ml.repository import ModelRepository

    limits = DecodeLimits()
    try:
        pipeline = ModelRepository(Path(repo)).load(model, PROVIDERS, threads, version)
        for batch in batches:  # warm-up at every batch size: first-call allocations, shape plans
            pipeline.predict([decode(b, "jpeg", limits) for b in share[:batch]])
    except BaseException as exc:
        barrier.abort()
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
        return
    results = {}
    for batch in batches:
        barrier.wait()
        started, cpu = time.time(), time.process_time()
        with_face = 0
        for _ in range(repeats):
            with_face = 0
            for i in range(0, len(share), batch):
                outcomes = pipeline.predict([decode(b, "jpeg", limits) for b in share[i: i + batch]])
                with_face += sum(o.label != "no_face" for o in outcomes)
        results[batch] = (started, time.time(), len(share) * repeats, time.process_time() - cpu, with_face)
    conn.send({"results": results, "runtime": {k: v for k, v in pipeline.runtime().items() if k != "sessions"}})


def measure(repo: Path, model: str, version: str | None, photos: list[bytes], processes: int, threads: int,
            batches: list[int], repeats: int = 1) -> list[Row]:
    """One (processes, threads) configuration at every batch size."""
    ctx = mp.get_context("spawn")  # fresh interpreters: no inherited ONNX Runtime threads or sessions
    barrier = ctx.Barrier(processes)
    pipes, procs = [], []
    for index in range(processes):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(child, str(repo), model, version, threads, photos[index::processes],
                                                batches, repeats, barrier), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    answers = [pipe.recv() for pipe in pipes]
    for proc in procs:
        proc.join(60)
    errors = [a["error"] for a in answers if "error" in a]
    if errors:
        raise RuntimeError(errors[0])
    label = f"{model}/{version or _live(repo, model)}"
    rows = []
    for batch in batches:
        parts = [a["results"][batch] for a in answers]
        rows.append(Row(label, processes, threads, batch, sum(p[2] for p in parts),
                        max(p[1] for p in parts) - min(p[0] for p in parts), sum(p[3] for p in parts),
                        sum(p[4] for p in parts)))
    return rows


def _live(repo: Path, model: str) -> str:
    from ml.repository import ModelRepository

    return ModelRepository(repo).manifest(model).version


def grid(repo: Path, model: str, version: str | None, photos: list[bytes], processes: list[int],
         threads: list[int], batches: list[int], repeats: int = 1) -> list[Row]:
    rows = []
    for p in processes:
        for t in threads:
            rows += measure(repo, model, version, photos, p, t, batches, repeats)
    return rows


def best(rows: list[Row]) -> Row:
    return max(rows, key=lambda r: r.rate)


def versions_wanted(repo: Path, model: str, wanted: str) -> list[tuple[str, bool]]:
    """(version, built?) for each asked version ('' = the live one)."""
    from ml.repository import ModelRepository

    built = ModelRepository(repo).versions(model)
    if not wanted:
        return [(built[-1], True)] if built else []
    return [(v, v in built) for v in wanted.split(",") if v.strip()]


def gpu_rows() -> list[list[object]]:
    return [["deepfake (CUDA EP, FP16)", "-", "-", "1..64", "not measured (no GPU lent)", "-", "-",
             "target ≥ 1,000 images/s; bench/gpu_check.py"],
            ["deepfake CUDA EP / CPU EP, same box", "-", "-", "-", "not measured (no GPU lent)", "-", "-",
             "target ≥ 20x; bench/gpu_check.py"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_repository_argument(parser)
    parser.add_argument("--model", default="deepfake")
    parser.add_argument("--model-version", default="", help="comma list, e.g. 1,2 (default: the live version)")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=1, help="passes over the images per measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    photos = face_photos(args.images, args.seed)
    shared = Shared().start()
    rows: list[Row] = []
    missing = []
    for version, built in versions_wanted(args.repository, args.model, args.model_version):
        if not built:
            missing.append(version)
            continue
        rows += grid(args.repository, args.model, version, photos, int_list(args.processes),
                     int_list(args.threads), int_list(args.batches), args.repeats)
    shared.stop(own_cpu_seconds())
    print(header(f"{args.model} ml stage offline: {args.images} distinct 512 px one-face JPEGs, decode included, "
                 "CPU EP", shared))
    best_by_model = {m: best([r for r in rows if r.model == m]) for m in dict.fromkeys(r.model for r in rows)}
    table_rows: list[list[object]] = []
    for r in rows:
        mark = "best" if best_by_model[r.model] is r else ""
        table_rows.append([r.model, r.processes, r.threads, r.batch, r.rate, r.cpu_ms,
                           f"{r.with_face}/{r.images // args.repeats}", mark])
    for version in missing:
        table_rows.append([f"{args.model}/{version}", "-", "-", "-", f"not built in {args.repository}", "-", "-", ""])
    table_rows += gpu_rows()
    print(table(["model", "processes", "ONNX threads", "batch", "images/s", "CPU ms/image", "faces found", ""],
                table_rows))
    for model, row in best_by_model.items():
        print(f"best {model}: {row.rate:.1f} images/s ({row.processes} processes x {row.threads} threads, batch "
              f"{row.batch}) = {row.rate / BASELINE:.2f}x the issue's baseline of {BASELINE} images/s "
              f"(target >= {CPU_TARGET:.0f}x = {BASELINE * CPU_TARGET:.1f})")
    if args.json:
        args.json.write_text(json.dumps({"rows": [{**asdict(r), "rate": r.rate} for r in rows],
                                         "provisional": shared.provisional, "other_cores": shared.other_cores},
                                        indent=2) + "\n")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
