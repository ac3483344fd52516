"""``deepscreen scan`` on a folder of photos: file by file (``--batch-size 1``: one POST and one long poll
per file) against groups (``POST /v1/batches`` of 16, each collected whole with one long poll), side by
side on the same stack, each on its own distinct photos (no known-verdict shortcut).

The scan runs in this process through ``cli.scan.screen_files``, the function behind the command,
with the command's default concurrency (4 requests in flight).

    .venv/bin/python bench/scan_folder.py [--images 240] [--batch-sizes 1,16] [--mode embedded|service|both]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import stacks
from bench.common import Shared, add_stack_arguments, header, int_list, own_cpu_seconds, stack_modes, table
from bench.photos import face_photos
from cli.scan import screen_files
from deepscreen.client import Client

CONCURRENCY = 4  # deepscreen scan's default --concurrency


def write_folder(blobs: list[bytes], folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    paths = [folder / f"photo-{n:04d}.jpg" for n in range(len(blobs))]
    for path, blob in zip(paths, blobs, strict=True):
        path.write_bytes(blob)
    return paths


def scan(stack: stacks.Stack, paths: list[Path], batch_size: int, model: str) -> float:
    """Files per second through the whole scan; raises if any file did not get its verdict."""
    with Client(stack.url, token=stack.token, pool_size=16) as client:
        started = time.monotonic()
        outcomes = screen_files(client, paths, text=None, models=model, concurrency=CONCURRENCY, timeout=600,
                                batch_size=batch_size)
        elapsed = time.monotonic() - started
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} files not screened, e.g. {failed[0].path}: {failed[0].error_code}")
    return len(paths) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=240, help="photos per scan (each scan its own)")
    parser.add_argument("--batch-sizes", default="1,16", help="--batch-size of each scan; the first is the reference")
    add_stack_arguments(parser)
    args = parser.parse_args(argv)

    sizes = int_list(args.batch_sizes)
    modes = stack_modes(args.mode)
    photos = face_photos(8 + args.images * len(sizes) * len(modes), seed=args.seed)
    shared = Shared().start()
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="ds-bench-scan-") as scratch:
        warm = write_folder(photos[:8], Path(scratch) / "warm")
        offset = 8
        for mode in modes:
            with getattr(stacks, mode)(args.model, args.repository) as stack:
                scan(stack, warm, 4, args.model)  # first-request work in every process
                rates = []
                for size in sizes:
                    folder = write_folder(photos[offset:offset + args.images], Path(scratch) / f"{mode}-{size}")
                    offset += args.images
                    rates.append(scan(stack, folder, size, args.model))
                rows += [[mode, size, rate, rate / rates[0]] for size, rate in zip(sizes, rates, strict=True)]
    shared.stop(own_cpu_seconds())

    print(header(f"deepscreen scan of {args.images} distinct 512 px one-face photos per scan ({args.model}), "
                 f"{CONCURRENCY} requests in flight", shared))
    print(table(["mode", "--batch-size", "files/s", f"vs --batch-size {sizes[0]}"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
