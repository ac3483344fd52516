"""End to end through the real stack vs the best offline rate of the same model, side by side in one run.

1. Offline: the model's ml stage on the same photos over processes x ONNX threads x batch
   (bench/deepfake_offline.py); the best row is the reference.
2. Embedded (``deepscreen up``: SQLite, the filesystem broker, local blobs, one solo worker per
   inference process) and/or service (``deepscreen web`` + ``worker`` + ``beat`` on PostgreSQL, a
   redis-server of its own and moto's S3 server): N concurrent clients submit the same distinct one-face
   photos over HTTP and poll for the verdicts (bench/load.py). Target (issue 7): ≥ 0.8 x offline best.

Everything shares the machine's cores: gunicorn, the workers, beat, PostgreSQL, Redis, the S3 server
and the load generator, as on a one-box install.

    .venv/bin/python bench/end_to_end.py [--images 120] [--model deepfake] [--concurrency 8]
        [--mode embedded|service|both] [--processes 1,2] [--threads 1,2] [--batches 1,8,32] [--json out.json]

Service mode needs PostgreSQL (BENCH_PG_ADMIN_URL, default postgres@127.0.0.1; a database is made
and dropped here); redis-server is started on a free port (BENCH_REDIS_URL uses an existing one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import deepfake_offline
from bench.common import Shared, add_stack_arguments, header, int_list, own_cpu_seconds, stack_modes, table
from bench.load import add_polling_argument
from bench.measure import StackRun, postgres_backend_cpu, run_stack
from bench.photos import face_photos

TARGET = 0.8
LABELS = {"embedded": "end to end, embedded (deepscreen up: SQLite, filesystem broker)",
          "service": "end to end, service (PostgreSQL, Redis, S3 server)"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    parser.add_argument("--processes", default="1,2", help="offline grid: processes")
    parser.add_argument("--threads", default="1,2", help="offline grid: ONNX Runtime threads")
    parser.add_argument("--batches", default="1,8,32", help="offline grid: batch sizes")
    parser.add_argument("--poll-interval", type=float, default=0.25)
    add_polling_argument(parser)
    add_stack_arguments(parser)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def stack_row(label: str, run: StackRun, reference: float) -> list[object]:
    return [label, run.load.rate, run.load.rate / reference, run.load.post_percentile(50),
            run.load.polls / run.load.jobs, run.load.mean_batch, run.worker_hwm_mib]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    photos = face_photos(args.images, args.seed)
    warm = face_photos(8, args.seed + 1000)  # other bytes: the measured photos stay unseen
    shared = Shared().start()
    offline_rows = deepfake_offline.grid(args.repository, args.model, None, photos, int_list(args.processes),
                                         int_list(args.threads), int_list(args.batches))
    best = deepfake_offline.best(offline_rows)
    runs = [run_stack(mode, args.model, args.repository, photos, warm, args.concurrency,
                      poll_interval=args.poll_interval, polling=args.polling) for mode in stack_modes(args.mode)]
    shared.stop(own_cpu_seconds() + sum(postgres_backend_cpu(r) for r in runs))

    print(header(f"end to end vs offline: {best.model}, {args.images} distinct 512 px one-face JPEGs, "
                 f"{args.concurrency} concurrent clients ({args.polling} polls)", shared))
    columns = ["path", "images/s", "vs best offline", "POST p50 ms", "polls/job", "mean batch",
               "worker peak RSS MiB"]
    rows: list[list[object]] = [[f"offline best: {best.processes} processes x {best.threads} threads, batch "
                                 f"{best.batch}, decode included", best.rate, 1.0, "-", "-", best.batch, "-"]]
    rows += [stack_row(LABELS[r.mode], r, best.rate) for r in runs]
    print(table(columns, rows))
    for r in runs:
        faces = sum(v for k, v in r.load.labels.items() if k != "no_face")
        print(f"{r.mode}: {r.inference_processes} inference processes; verdicts {r.load.labels} "
              f"({faces}/{r.load.jobs} with a face); failed {len(r.load.failed)}; "
              f"ratio {r.load.rate / best.rate:.2f} (target >= {TARGET})")
        print(f"{r.mode}: CPU ms/image " + ", ".join(
            f"{name} {1e3 * seconds / r.load.jobs:.2f}"
            for name, seconds in [*r.cpu.items(), *r.other_cpu.items(), ("load generator", r.load_generator_cpu)]))
    print("\noffline grid (same photos, same run):")
    print(table(["processes", "ONNX threads", "batch", "images/s", "CPU ms/image"],
                [[o.processes, o.threads, o.batch, o.rate, o.cpu_ms] for o in offline_rows]))
    if args.json:
        args.json.write_text(json.dumps({
            "offline_best": best.rate, "provisional": shared.provisional, "other_cores": shared.other_cores,
            "runs": {r.mode: {"rate": r.load.rate, "ratio": r.load.rate / best.rate,
                              "post_p50_ms": r.load.post_percentile(50), "failed": len(r.load.failed)} for r in runs},
        }, indent=2) + "\n")
    return 0 if all(not r.load.failed for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
