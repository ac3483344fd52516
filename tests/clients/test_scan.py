"""``deepscreen scan`` on folders against a live deepscreen: recursion picks media only, uploads run
concurrently, the progress advances on verdicts, the JSON and CSV match what the API says, and the
exit code tells whether everything was screened."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.scan import chunks, screen_files
from deepscreen.client import Client, media_files
from tests.clients.conftest import Live, noise_jpeg
from tests.conftest import png_bytes

pytestmark = pytest.mark.e2e


def make_folder(root: Path) -> dict[str, bytes]:
    """Media at two depths, plus things a folder scan must skip."""
    files = {"a.jpg": noise_jpeg(5001), "nested/b.png": png_bytes((80, 60), (200, 10, 10)),
             "nested/deeper/c.JPG": noise_jpeg(5002)}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "README.txt").write_text("not media")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "d.jpg").write_bytes(noise_jpeg(5003))
    return files


def noise_photos(folder: Path, prefix: str, seeds: range) -> list[Path]:
    """One distinct noise JPEG per seed, named ``<prefix><n>.jpg`` in seed order."""
    paths = [folder / f"{prefix}{n}.jpg" for n in range(len(seeds))]
    for path, seed in zip(paths, seeds, strict=True):
        path.write_bytes(noise_jpeg(seed))
    return paths


def run_scan(live: Live, *args: str, token: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **live.env, "DEEPSCREEN_URL": live.url, "DEEPSCREEN_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "cli.main", "scan", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_folder_scan_writes_json_and_csv_that_match_the_api(live: Live, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    files = make_folder(folder)
    assert sorted(p.relative_to(folder).as_posix() for p in media_files([folder])) == sorted(files)
    token = live.token("scan-folder")
    out_json, out_csv = tmp_path / "out.json", tmp_path / "out.csv"
    result = run_scan(live, str(folder), "--concurrency", "3", "--json", str(out_json), "--csv", str(out_csv),
                      token=token)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 files: 3 succeeded" in result.stdout
    assert "verdicts: 100%" in result.stderr and "3/3" in result.stderr  # tqdm's bar on stderr

    items = json.loads(out_json.read_text())["items"]
    assert sorted(Path(i["file"]).relative_to(folder).as_posix() for i in items) == sorted(files)
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 3 and {r["model"] for r in rows} == {"nsfw"}
    with Client(live.url, token=token) as client:
        for item in items:
            job = client.get_job(item["job_id"])
            assert job.status == item["status"] == "succeeded"
            assert item["results"]["nsfw"]["score"] == job.results["nsfw"].score
            assert item["sha256"] == job.media["sha256"]
            row = next(r for r in rows if r["job_id"] == job.id)
            assert row["file"] == item["file"] and row["label"] == job.results["nsfw"].label
            assert float(row["score"]) == job.results["nsfw"].score
            assert row["validation"] == "not_validated_on_real_data"


def test_a_refused_file_makes_the_exit_code_non_zero(live: Live, tmp_path: Path) -> None:
    (tmp_path / "fine.jpg").write_bytes(noise_jpeg(5100))
    (tmp_path / "broken.jpg").write_bytes(b"this is not a JPEG at all")
    out_json = tmp_path / "out.json"
    result = run_scan(live, str(tmp_path / "fine.jpg"), str(tmp_path / "broken.jpg"), "--json", str(out_json),
                      "--no-progress", token=live.token("scan-broken"))
    assert result.returncode == 1, result.stdout + result.stderr
    by_name = {Path(i["file"]).name: i for i in json.loads(out_json.read_text())["items"]}
    assert by_name["fine.jpg"]["status"] == "succeeded"
    assert by_name["broken.jpg"]["status"] == "rejected" and by_name["broken.jpg"]["job_id"] is None
    assert by_name["broken.jpg"]["error"]["code"] == "unsupported_media_type"
    lines = result.stdout.splitlines()
    assert any(line.startswith("broken.jpg") and "unsupported_media_type" in line for line in lines)


def test_progress_advances_on_verdicts_not_on_uploads(live: Live, tmp_path: Path) -> None:
    paths = noise_photos(tmp_path, "v", range(5200, 5205))
    seen: list[str] = []
    with Client(live.url, token=live.token("scan-progress")) as client:
        outcomes = screen_files(client, paths, text=None, models="nsfw", concurrency=2, timeout=300,
                                on_verdict=lambda o: seen.append(o.job.status if o.job else "none"))
    assert seen == ["succeeded"] * 5  # every tick of the bar is a finished job
    assert [o.path for o in outcomes] == paths and all(o.ok for o in outcomes)


class CountingClient(Client):
    """A real client that counts its upload requests (how the files went up, not what came back)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.batch_posts: list[int] = []
        self.single_posts = 0

    def submit_batch(self, items, **options):  # type: ignore[no-untyped-def, override]
        items = list(items)
        self.batch_posts.append(len(items))
        return super().submit_batch(items, **options)

    def submit_file(self, file, **options):  # type: ignore[no-untyped-def, override]
        self.single_posts += 1
        return super().submit_file(file, **options)


def test_groups_respect_the_file_count_and_byte_caps(tmp_path: Path) -> None:
    sizes = {"a": 10, "b": 10, "c": 10, "big": 50, "d": 10, "e": 30}
    paths = []
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
        paths.append(tmp_path / name)
    missing = tmp_path / "missing.jpg"
    groups = chunks([*paths, missing], batch_files=2, batch_bytes=40)
    assert [[p.name for p in g] for g in groups] == [["a", "b"], ["c"], ["big"], ["d", "e"], ["missing.jpg"]]
    assert chunks(paths, batch_files=1) == [[p] for p in paths]
    assert [len(g) for g in chunks(paths, batch_files=16)] == [6]


def test_a_folder_goes_up_in_batches_each_file_paired_with_its_own_job(live: Live, tmp_path: Path) -> None:
    paths = noise_photos(tmp_path, "p", range(5300, 5305))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a JPEG")
    files = [*paths[:2], broken, *paths[2:]]
    token = live.token("scan-batches")
    seen: list[str] = []
    with CountingClient(live.url, token=token) as client:
        batched = screen_files(client, files, text=None, models="nsfw", concurrency=2, timeout=300, batch_size=4,
                               on_verdict=lambda o: seen.append(o.path.name))
        assert sorted(client.batch_posts) == [2, 4] and client.single_posts == 0
    assert sorted(seen) == sorted(p.name for p in files)  # every file reported once
    assert [o.path for o in batched] == files
    by_name = {o.path.name: o for o in batched}
    assert by_name["broken.jpg"].status == "rejected" and by_name["broken.jpg"].error_code == "unsupported_media_type"
    for path in paths:  # each file's outcome is the job of its own bytes, whatever the order of the answers
        job = by_name[path.name].job
        assert by_name[path.name].ok and job is not None
        assert job.media["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert 0.0 <= job.results["nsfw"].score <= 1.0

    with CountingClient(live.url, token=token) as client:
        alone = screen_files(client, paths, text=None, models="nsfw", concurrency=2, timeout=300, batch_size=1)
        assert client.batch_posts == [] and client.single_posts == 5
    assert [o.job.media["sha256"] for o in alone if o.job] == [by_name[p.name].job.media["sha256"]  # type: ignore[union-attr]
                                                               for p in paths]


def test_a_group_refused_whole_is_sent_again_file_by_file(live: Live, tmp_path: Path) -> None:
    fine = tmp_path / "fine.jpg"
    fine.write_bytes(noise_jpeg(5400))
    gone = tmp_path / "gone.jpg"  # listed, then deleted before the upload: the batch cannot be read whole
    with CountingClient(live.url, token=live.token("scan-fallback")) as client:
        outcomes = screen_files(client, [fine, gone], text=None, models="nsfw", concurrency=1, timeout=300)
        assert client.batch_posts == [2] and client.single_posts == 2
    assert outcomes[0].ok
    assert outcomes[1].status == "rejected" and outcomes[1].error_code == "unreadable"
