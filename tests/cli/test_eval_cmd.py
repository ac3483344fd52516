"""``deepscreen eval``: each layout end to end (JSON with auroc, PNGs, table), and ``--record`` into a
COPY of a model version (manifest validation block, model card, checksums) that `models verify` accepts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from cli.eval_cmd import eval_cmd
from ml.manifest import NOT_VALIDATED, VALIDATED, Manifest, sha256_file
from tests.ml.eval_fixtures import model_repository, write_media_folders, write_memes, write_texts
from tests.support.processes import ROOT

CPU = ("--providers", "CPUExecutionProvider")


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_repository(tmp_path_factory)


@pytest.fixture()
def nsfw_copy(repository: Path, tmp_path: Path) -> Path:
    """A repository holding a copy of nsfw/1: --record writes here, never into the shared repository."""
    root = tmp_path / "repo"
    shutil.copytree(repository / "nsfw" / "1", root / "nsfw" / "1")
    return root


def run_eval(repository: Path, *args: str) -> Result:
    return CliRunner().invoke(eval_cmd, [*args, "--repository", str(repository), *CPU, "--bootstrap", "200"])


def test_folders_give_json_with_auroc_items_and_two_pngs(repository: Path, tmp_path: Path) -> None:
    data = write_media_folders(tmp_path / "set", grouped=True)
    out = tmp_path / "out"
    result = run_eval(repository, "nsfw", "--data", str(data), "--out", str(out), "--group-by", "folder")
    assert result.exit_code == 0, result.output
    assert "AUROC" in result.output and "corrupt_image=1" in result.output and "by folder:" in result.output
    report = json.loads((out / "nsfw-1.json").read_text())
    assert 0.0 <= report["auroc"] <= 1.0 and report["auroc_ci"][0] <= report["auroc"] <= report["auroc_ci"][1]
    for key in ("average_precision", "accuracy", "precision", "recall", "fpr", "ece"):
        assert key in report
    assert report["n"] == 10 and report["undecodable"] == {"corrupt_image": 1}
    assert set(report["by_group"]) == {"skimage", "photos", "noise"}
    assert report["figures"] == {"roc": "nsfw-1-roc.png", "reliability": "nsfw-1-reliability.png"}
    for name in report["figures"].values():
        with Image.open(out / name) as png:
            assert png.format == "PNG" and png.size[0] >= 400
    items = [json.loads(line) for line in (out / "nsfw-1.items.jsonl").read_text().splitlines()]
    assert len(items) == 11 and {i["group"] for i in items} == {"skimage", "photos", "noise"}
    assert "fields" not in items[0]


def test_meme_jsonl_names_hateful_positive(repository: Path, tmp_path: Path) -> None:
    data = write_memes(tmp_path / "memes", count=10)
    out = tmp_path / "out"
    result = run_eval(repository, "meme", "--version", "1", "--data", str(data), "--out", str(out),
                      "--group-by", "source")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "meme-1.json").read_text())
    assert report["positive_label"] == "hateful" and report["threshold_source"] == "manifest thresholds['hateful']"
    assert "auroc" in report and set(report["by_group"]) == {"a", "b"}
    assert "positive class     hateful = outcome.score >= 0.5" in result.output


def test_texts_as_the_user_runs_it(repository: Path, tmp_path: Path) -> None:
    """The real command in a subprocess, on a csv: --score-key, --group-by, --limit, --seed."""
    data = write_texts(tmp_path / "texts.csv")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "cli.main", "eval", "text", "--version", "1", "--data", str(data), "--out", str(out),
            "--score-key", "hate", "--group-by", "type", "--limit", "12", "--seed", "4", "--bootstrap", "300",
            "--repository", str(repository), *CPU]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "text-1.json").read_text())
    assert report["data"]["items"] == 12 and report["score"] == "outcome.scores['hate']"
    assert report["auroc"] is not None and report["bootstrap"] == {
        "resamples": 300, "seed": 4, "method": "percentile, items resampled with replacement", "level": 0.95}
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    repeat = json.loads((out / "text-1.json").read_text())
    assert repeat["auroc_ci"] == report["auroc_ci"] and repeat["by_group"] == report["by_group"]


def test_clear_errors(repository: Path, tmp_path: Path) -> None:
    texts = write_texts(tmp_path / "t.jsonl")
    assert "holds texts only" in run_eval(repository, "nsfw", "--data", str(texts)).output
    assert "columns: extra, extra.type, label, source, text" in run_eval(
        repository, "text", "--data", str(texts), "--group-by", "lang").output
    refused = run_eval(repository, "nsfw", "--data", str(texts), "--synthetic")
    assert refused.exit_code != 0 and "--synthetic only says how to --record" in refused.output
    (tmp_path / "empty" / "real").mkdir(parents=True)
    empty = run_eval(repository, "nsfw", "--data", str(tmp_path / "empty"))
    assert empty.exit_code != 0 and "no images or videos" in empty.output
    unknown = run_eval(repository, "nosuchmodel", "--data", str(texts))
    assert unknown.exit_code != 0 and "no model named 'nosuchmodel'" in unknown.output


def _verify(repository: Path) -> subprocess.CompletedProcess[str]:
    from core.settings import Settings

    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(MODEL_REPOSITORY=str(repository), DATA_DIR=str(repository.parent / "data"))
    return subprocess.run([sys.executable, "-m", "cli.main", "models", "verify"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_record_writes_validation_block_and_card_and_verify_passes(nsfw_copy: Path, tmp_path: Path) -> None:
    version = nsfw_copy / "nsfw" / "1"
    before = Manifest.load(version)
    assert before.quality()["status"] == NOT_VALIDATED
    data = write_media_folders(tmp_path / "set")
    result = run_eval(nsfw_copy, "nsfw", "--data", str(data), "--out", str(tmp_path / "out"), "--record",
                      "--group-by", "folder", "--description", "skimage photos vs generated noise",
                      "--split", "made for this test")
    assert result.exit_code == 0, result.output
    assert "recorded set in nsfw/1 manifest validation" in result.output
    report = json.loads((tmp_path / "out" / "nsfw-1.json").read_text())
    after = Manifest.load(version)
    block = after.validation
    assert block["status"] == VALIDATED and block["date"] and block["summary"].startswith("AUROC ")
    [entry] = block["datasets"]
    assert entry["name"] == "set" and entry["description"] == "skimage photos vs generated noise"
    assert entry["split"] == "made for this test" and entry["n"] == 10 and entry["positives"] == 4
    assert entry["auroc"] == pytest.approx(report["auroc"], abs=1e-4) and len(entry["auroc_ci"]) == 2
    assert entry["threshold"] == 0.8 and entry["undecodable"] == {"corrupt_image": 1} and entry["ece_bins"] == 10
    assert set(entry["by_group"]) == {"skimage", "photos", "noise"}
    # Everything else in the manifest is as it was.
    assert after.files == before.files and after.thresholds == before.thresholds
    assert after.provenance == before.provenance and after.labels == before.labels
    card = (version / "MODEL_CARD.md").read_text()
    assert card.startswith("# nsfw v1") and card.count("## Validation") == 1
    assert "**Validated on real labelled data**" in card and "skimage photos vs generated noise" in card
    assert f"{report['auroc']:.3f}" in card and "By `folder`:" in card
    assert _verify(nsfw_copy).returncode == 0

    # The same name again replaces its entry; another name is added beside it; the card is regenerated.
    again = run_eval(nsfw_copy, "nsfw", "--data", str(data), "--out", str(tmp_path / "out"), "--record",
                     "--limit", "8")
    assert again.exit_code == 0, again.output
    other = run_eval(nsfw_copy, "nsfw", "--data", str(data), "--out", str(tmp_path / "out"), "--record",
                     "--dataset-name", "second")
    assert other.exit_code == 0, other.output
    datasets = Manifest.load(version).validation["datasets"]
    assert [d["name"] for d in datasets] == ["set", "second"] and datasets[0]["description"].startswith("set (")
    card = (version / "MODEL_CARD.md").read_text()
    assert card.count("## Validation") == 1 and "| second |" in card and "By `folder`" not in card
    assert _verify(nsfw_copy).returncode == 0


def test_synthetic_data_is_recorded_as_provenance_never_validation(nsfw_copy: Path, tmp_path: Path) -> None:
    version = nsfw_copy / "nsfw" / "1"
    data = write_media_folders(tmp_path / "noise")
    result = run_eval(nsfw_copy, "nsfw", "--data", str(data), "--out", str(tmp_path / "out"), "--record",
                      "--synthetic", "--description", "generated noise, not real data")
    assert result.exit_code == 0, result.output
    manifest = Manifest.load(version)
    assert manifest.validation == {} and manifest.quality()["status"] == NOT_VALIDATED
    [check] = manifest.provenance["synthetic_checks"]
    assert check["name"] == "noise" and check["description"] == "generated noise, not real data"
    card = (version / "MODEL_CARD.md").read_text()
    assert "**Not validated on real data.**" in card and "they are **not** validation" in card
    assert _verify(nsfw_copy).returncode == 0


def test_record_updates_the_card_checksum_where_the_manifest_lists_the_card(nsfw_copy: Path, tmp_path: Path) -> None:
    version = nsfw_copy / "nsfw" / "1"
    raw = json.loads((version / "manifest.json").read_text())
    raw["files"]["card"] = {"path": "MODEL_CARD.md", "sha256": sha256_file(version / "MODEL_CARD.md")}
    (version / "manifest.json").write_text(json.dumps(raw, indent=2))
    old = raw["files"]["card"]["sha256"]
    result = run_eval(nsfw_copy, "nsfw", "--data", str(write_media_folders(tmp_path / "set")),
                      "--out", str(tmp_path / "out"), "--record")
    assert result.exit_code == 0, result.output
    entry = Manifest.load(version).files["card"]
    assert entry["sha256"] != old and entry["sha256"] == sha256_file(version / "MODEL_CARD.md")
    assert _verify(nsfw_copy).returncode == 0
