"""``deepscreen train text`` on a small written slice: reading, group-aware split, each part reproducible,
the runtime featuriser equal to the training one, the LoRA merge exact, and the command end to end."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ml.build.training.text_char import char_logits, char_matrix, fit_char_model
from ml.build.training.text_data import group_folds, is_held_out, read_rows
from ml.build.training.text_lora import LoraConfig, adapter_arrays, fine_tune, merged_encoder, predict, save_adapters
from ml.build.training.text_train import fit_stacker
from ml.text_hate import CharModel, char_features

GROUPS = ("migrants", "muslims", "women", "jews", "gay men", "disabled people")
HATE = ("{g} are filthy rats", "all {g} should be locked up and gassed", "{g} are subhuman trash",
        "i wish every one of the {g} would drop dead", "{g} are a disease on this earth")
BENIGN = ("my friends include many {g}", "{g} should be treated with respect", "i met some {g} at the library",
          "the article was about {g} and their history", "{g} organised a charity run today")


def _write_slice(folder: Path) -> Path:
    """jsonl.gz with Hatemoji-style pairs, a csv, and a ToxiGen-style file with target groups."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, g in enumerate(GROUPS):
        for j, (hate, benign) in enumerate(zip(HATE, BENIGN, strict=True)):
            a, b = f"{i}-{j}-h", f"{i}-{j}-b"
            rows.append({"text": hate.format(g=g), "label": 1, "source": "pairs", "source_id": a,
                         "extra": {"matched_id": b}})
            rows.append({"text": benign.format(g=g), "label": 0, "source": "pairs", "source_id": b,
                         "extra": {"matched_id": a}})
    with gzip.open(folder / "pool.jsonl.gz", "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    with (folder / "posts.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["text", "label", "source"])
        writer.writeheader()
        for k in range(30):
            writer.writerow({"text": f"post {k}: " + ("kill all the " + GROUPS[k % 6] if k % 2 else
                                                      "lovely weather for a walk, " + GROUPS[k % 6]),
                             "label": k % 2, "source": "posts"})
    tox = folder / "toxigen"
    tox.mkdir(exist_ok=True)
    with (tox / "statements.jsonl").open("w") as fh:
        for k, g in enumerate(GROUPS * 3):
            fh.write(json.dumps({"text": f"{g} are {'ruining everything' if k % 2 else 'part of our town'}",
                                 "label": k % 2, "group": g}) + "\n")
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_slice(tmp_path_factory.mktemp("text_slice"))


def test_reads_every_layout_and_keeps_groups_together(data: Path) -> None:
    rows = read_rows([data])
    sources = {r.source for r in rows}
    assert sources == {"pairs", "posts", "toxigen"}
    assert len(rows) == 60 + 30 + 18
    pairs = [r for r in rows if r.source == "pairs"]
    assert len({r.group for r in pairs}) == 30  # each hate / benign perturbation pair is one group
    for seed in range(5):
        for group in {r.group for r in rows}:
            sides = {is_held_out(r, seed, share=0.3) for r in rows if r.group == group}
            assert len(sides) == 1, group
        folds = group_folds(rows, 5, seed)
        by_group: dict[str, set[int]] = {}
        for row, fold in zip(rows, folds, strict=True):
            by_group.setdefault(row.group, set()).add(fold)
        assert all(len(f) == 1 for f in by_group.values())
    assert {r.group for r in rows if r.source == "toxigen"} == set(GROUPS)


def test_char_model_is_reproducible_and_runtime_matches_training(data: Path) -> None:
    rows = read_rows([data])
    texts, y = [r.text for r in rows], np.array([r.label for r in rows])
    x = char_matrix(texts)
    first, second = fit_char_model(x, y), fit_char_model(x, y)
    assert np.array_equal(first.weights, second.weights) and first.bias == second.bias
    assert np.allclose(first.logits(texts), char_logits(first, x), atol=1e-4)
    # obfuscation maps onto the plain spelling in the letters-only view
    plain, spaced = set(char_features("kill")[0]), set(char_features("k i l l")[0])
    assert len(plain & spaced) >= 3


def test_lora_fine_tune_is_reproducible_and_merges_exactly(data: Path, tmp_path: Path) -> None:
    rows = read_rows([data])[:48]
    texts, y = [r.text for r in rows], np.array([r.label for r in rows], np.float32)
    config = LoraConfig(epochs=1.0, batch=16, max_tokens=32, seed=3)
    model_a, log_a = fine_tune(texts, y, config, log=lambda _: None)
    model_b, _ = fine_tune(texts, y, config, log=lambda _: None)
    a, b = adapter_arrays(model_a, config), adapter_arrays(model_b, config)
    assert set(a) == set(b) and log_a["steps"] == 3
    for key in a:
        assert np.allclose(a[key].astype(np.float32), b[key].astype(np.float32), atol=1e-3), key
    assert np.abs(a["head.weight"]).max() > 0  # the head moved
    path = tmp_path / "lora.npz"
    save_adapters(model_a, config, path)
    # the merged plain encoder gives the adapter model's outputs (up to the fp16 storage of the deltas)
    emb_lora, logit_lora = predict(model_a, texts[:8])
    emb_merged, logit_merged = predict(merged_encoder(path), texts[:8])
    assert np.abs(emb_lora - emb_merged).max() < 1e-3
    assert np.abs(logit_lora - logit_merged).max() < 1e-3


def test_stacker_is_reproducible_and_calibrated_on_its_rows() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000).astype(np.float64)
    x = np.stack([2 * y - 1 + rng.normal(0, 1.5, 2000) for _ in range(5)], axis=1)
    first, second = fit_stacker(x, y, seed=1), fit_stacker(x, y, seed=1)
    assert np.allclose(first.weights, second.weights) and first.bias == pytest.approx(second.bias)
    parts = {"minilm": x[:, 0], "char": x[:, 1]} | {
        name: 1 / (1 + np.exp(-x[:, i])) for i, name in
        ((2, "hatesonar_hate"), (3, "hatesonar_offensive"), (4, "profanity"))}
    p = first.predict(parts)
    assert abs(p.mean() - y.mean()) < 0.03  # calibrated-in-the-large
    assert p[y == 1].mean() > p[y == 0].mean() + 0.3


def test_train_command_end_to_end_writes_weights_and_report(data: Path, tmp_path: Path) -> None:
    from cli.main import main

    out = tmp_path / "weights"
    args = ["train", "text", "--data", str(data), "--out", str(out), "--epochs", "0.5", "--seed", "0",
            "--threads", "2", "--cache", str(tmp_path / "cache")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for name in ("lora.npz", "lora.json", "char.npz", "stacker.json", "train_report.json"):
        assert (out / name).is_file(), name
    report = json.loads((out / "train_report.json").read_text())
    held = report["held_out"]
    assert held["overall"]["n"] == report["data"]["held_out_rows"] > 0
    assert set(held["by_source"]) <= {"pairs", "posts", "toxigen"}
    for figures in held["by_source"].values():
        if figures["auroc"] is not None:
            lo, hi = figures["auroc_ci"]
            assert 0.0 <= lo <= hi <= 1.0
    assert "by_source" in report["leave_one_source_out"]
    assert report["functional_probe"]["n"] > 100
    CharModel.load(out / "char.npz")
    # a second run with the same data and config reuses the fine-tuned adapters
    again = CliRunner().invoke(main, [*args, "--no-loso"])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "train_report.json").read_text())["fine_tune"]["reused"] is True
