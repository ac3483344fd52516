"""``deepscreen scan`` on folders against a live deepscreen: recursion picks media only, uploads run
concurrently, the progress advances on verdicts, the JSON and CSV match what the API says, and the
exit code tells whether everything was screened."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.scan import screen_files
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
    paths = []
    for n in range(5):
        path = tmp_path / f"v{n}.jpg"
        path.write_bytes(noise_jpeg(5200 + n))
        paths.append(path)
    seen: list[str] = []
    with Client(live.url, token=live.token("scan-progress")) as client:
        outcomes = screen_files(client, paths, text=None, models="nsfw", concurrency=2, timeout=300,
                                on_verdict=lambda o: seen.append(o.job.status if o.job else "none"))
    assert seen == ["succeeded"] * 5  # every tick of the bar is a finished job
    assert [o.path for o in outcomes] == paths and all(o.ok for o in outcomes)
