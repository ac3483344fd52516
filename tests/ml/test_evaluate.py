"""Evaluation on labelled data (ml.build.evaluate): layouts, the positive class, scores, groups, intervals.

Real models from the built repository (nsfw, text, meme) on small sets generated in the tests.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ml.build.evaluate import DatasetError, evaluate, format_table, load_dataset, resolve_target
from ml.build.evaluation.datasets import decode_sample
from ml.build.metrics import auroc
from ml.manifest import Manifest
from ml.repository import ModelRepository
from tests.ml.eval_fixtures import TEXT_ROWS, model_repository, write_media_folders, write_memes, write_texts

CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_repository(tmp_path_factory)


@pytest.fixture(scope="module")
def nsfw(repository: Path):  # type: ignore[no-untyped-def]
    return ModelRepository(repository).load("nsfw", CPU)


@pytest.fixture(scope="module")
def text(repository: Path):  # type: ignore[no-untyped-def]
    return ModelRepository(repository).load("text", CPU)


@pytest.fixture(scope="module")
def meme(repository: Path):  # type: ignore[no-untyped-def]
    return ModelRepository(repository).load("meme", CPU)


# ---- layouts ------------------------------------------------------------------------------------

def test_folder_layouts_read_labels_and_the_top_level_folder(tmp_path: Path) -> None:
    nested = load_dataset(write_media_folders(tmp_path / "a"))
    grouped = load_dataset(write_media_folders(tmp_path / "b", grouped=True))
    zero_one = load_dataset(write_media_folders(tmp_path / "c", zero_one=True))
    for dataset in (nested, grouped, zero_one):
        assert dataset.layout == "folders"
        assert len(dataset.samples) == 11 and dataset.positives == 5  # 5 photos + video | 4 images + broken
        assert dataset.columns() == ["folder"]
    by_ref = {s.ref: s for s in nested.samples}
    assert by_ref["fake/noise/broken.jpg"].label == 1 and by_ref["fake/noise/broken.jpg"].fields == {"folder": "noise"}
    assert by_ref["real/photos/clip.mp4"].label == 0
    assert {s.fields["folder"] for s in grouped.samples} == {"skimage", "photos", "noise"}
    assert next(s for s in grouped.samples if s.ref == "noise/fake/broken.jpg").label == 1
    assert "astronaut" not in nested.describe() and "11 items, 5 positive, 6 negative" in nested.describe()


def test_memes_jsonl_reads_image_paths_captions_and_columns(tmp_path: Path) -> None:
    path = write_memes(tmp_path / "memes", count=6)
    dataset = load_dataset(path)
    assert dataset.layout == "memes" and len(dataset.samples) == 6
    first = dataset.samples[0]
    assert first.path == path.parent / "img/00000.png" and first.path.is_file()
    assert first.text and first.label in (0, 1) and first.fields["source"] in ("a", "b")
    item = decode_sample(first)
    assert item.kind == "image" and item.text == first.text


@pytest.mark.parametrize("name", ["texts.csv", "texts.jsonl", "texts.jsonl.gz"])
def test_text_files_read_text_label_and_columns(tmp_path: Path, name: str) -> None:
    dataset = load_dataset(write_texts(tmp_path / name))
    assert dataset.layout == "texts" and len(dataset.samples) == len(TEXT_ROWS)
    assert [s.label for s in dataset.samples] == [r["label"] for r in TEXT_ROWS]
    assert [s.text for s in dataset.samples] == [r["text"] for r in TEXT_ROWS]
    assert "source" in dataset.columns()
    assert ("type" if name.endswith(".csv") else "extra.type") in dataset.columns()


@pytest.mark.parametrize(("content", "suffix", "message"), [
    ('{"text": "x"}\n', ".jsonl", "texts.jsonl:1 has no label"),
    ('{"text": "x", "label": 2}\n', ".jsonl", "label must be 0 or 1"),
    ('{"label": 1}\n', ".jsonl", "has no text field"),
    ("text,score\nhello,1\n", ".csv", "lacks ['label']"),
    ("not json\n", ".jsonl", "is not JSON"),
    ("", ".jsonl", "holds no rows"),
    ("hello", ".txt", "must be .csv, .jsonl or .jsonl.gz"),
])
def test_bad_files_are_refused_with_a_clear_message(tmp_path: Path, content: str, suffix: str, message: str) -> None:
    path = tmp_path / f"texts{suffix}"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_dataset(path)


def test_a_folder_without_class_folders_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "dev.jsonl").write_text("")
    with pytest.raises(DatasetError, match=r"no images or videos .*pass its \.jsonl file"):
        load_dataset(tmp_path)


def test_limit_takes_a_seeded_subset_in_file_order(tmp_path: Path) -> None:
    dataset = load_dataset(write_texts(tmp_path / "t.jsonl"))
    a, b, c = dataset.limit(6, seed=1), dataset.limit(6, seed=1), dataset.limit(6, seed=2)
    assert len(a.samples) == 6 and [s.ref for s in a.samples] == [s.ref for s in b.samples]
    assert [s.ref for s in a.samples] != [s.ref for s in c.samples]
    lines = [int(s.ref.split(":")[1]) for s in a.samples]
    assert lines == sorted(lines)
    assert dataset.limit(0, seed=1) is dataset


# ---- the positive class -------------------------------------------------------------------------

def test_positive_class_comes_from_the_thresholds_not_the_label_order(repository: Path) -> None:
    repo = ModelRepository(repository)
    meme_manifest = repo.manifest("meme")
    assert meme_manifest.labels[1] == "not_hateful"  # what the old code took as positive
    target = resolve_target(meme_manifest)
    assert (target.positive, target.threshold) == ("hateful", meme_manifest.thresholds["hateful"])
    assert resolve_target(repo.manifest("nsfw")).positive == "nsfw"
    text_target = resolve_target(repo.manifest("text"))
    assert text_target.positive == "hate" and "--score-key" in text_target.notes[0]
    keyed = resolve_target(repo.manifest("text"), score_key="offensive")
    assert (keyed.positive, keyed.threshold, keyed.score_name) == ("offensive", 0.7, "outcome.scores['offensive']")
    with pytest.raises(ValueError, match="no threshold for 'clean'"):
        resolve_target(repo.manifest("text"), score_key="clean")
    assert resolve_target(repo.manifest("text"), score_key="clean", threshold=0.3).threshold == 0.3


def test_positive_class_of_manifests_by_their_threshold_key(tmp_path: Path) -> None:
    def manifest(labels: list[str], thresholds: dict[str, float], task: str = "x") -> Manifest:
        return Manifest("m", "1", task, "p", tmp_path, {}, labels=labels, thresholds=thresholds)

    assert resolve_target(manifest(["real", "fake"], {"fake": 0.61})).positive == "fake"
    assert resolve_target(manifest(["fake", "real"], {"fake": 0.61})).threshold == 0.61  # order irrelevant
    assert resolve_target(manifest(["a", "b"], {"a": 0.2, "task": 0.4}, task="task")).positive == "task"
    with pytest.raises(ValueError, match="names no threshold"):
        resolve_target(manifest(["a", "b"], {}))


def test_meme_is_measured_as_p_hateful_at_its_threshold(meme, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dataset = load_dataset(write_memes(tmp_path / "memes", count=12))
    report, rows = evaluate(meme, dataset, resamples=100)
    assert report["positive_label"] == "hateful" and report["threshold"] == meme.manifest.thresholds["hateful"]
    assert report["n"] == 12 and report["auroc"] is not None and report["auroc"] > 0.5  # hostile captions higher
    # The score read is P(hateful): the pipeline's own scores["hateful"] for the same item.
    direct = meme.predict([decode_sample(dataset.samples[0])])[0]
    assert rows[0]["score"] == pytest.approx(direct.scores["hateful"])
    # Move the threshold between the scores: the confusion follows score >= threshold exactly.
    scores = np.array([r["score"] for r in rows])
    labels = np.array([r["label"] for r in rows])
    cut = float(np.sort(scores)[7])
    original = meme.manifest
    meme.manifest = dataclasses.replace(original, thresholds={"hateful": cut})
    try:
        moved, _ = evaluate(meme, dataset, resamples=0)
    finally:
        meme.manifest = original
    flagged = scores >= cut
    assert moved["threshold"] == cut
    positive = labels == 1
    assert moved["confusion"] == {"tn": int((~flagged & ~positive).sum()), "fp": int((flagged & ~positive).sum()),
                                  "fn": int((~flagged & positive).sum()), "tp": int((flagged & positive).sum())}
    assert moved["recall"] == pytest.approx((flagged & (labels == 1)).sum() / (labels == 1).sum())


# ---- running models -----------------------------------------------------------------------------

def test_media_folders_run_in_batches_and_count_what_cannot_be_scored(nsfw, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dataset = load_dataset(write_media_folders(tmp_path / "set"))
    report, rows = evaluate(nsfw, dataset, batch_size=3, group_by="folder", resamples=200)
    assert report["data"]["items"] == 11 and report["n"] == 10
    assert report["undecodable"] == {"corrupt_image": 1} and report["declined"] == {}
    assert report["positive_label"] == "nsfw" and report["threshold"] == 0.8
    assert sum(report["confusion"].values()) == 10
    assert [r["ref"] for r in rows] == [s.ref for s in dataset.samples]  # rows keep the data's order
    video = next(r for r in rows if r["ref"].endswith("clip.mp4"))
    assert video["label"] == 0 and video["score"] is not None  # sampled frames decoded and scored
    assert report["auroc"] == pytest.approx(auroc([r["label"] for r in rows if r["score"] is not None],
                                                  [r["score"] for r in rows if r["score"] is not None]))
    groups = report["by_group"]
    assert set(groups) == {"skimage", "photos", "noise"}
    assert sum(g["n"] for g in groups.values()) == 10 and groups["noise"]["undecodable"] == {"corrupt_image": 1}
    assert groups["photos"]["auroc"] is None and groups["skimage"]["auroc"] is not None  # photos: negatives only
    # Batching does not change scores: one item at a time gives the same numbers.
    single, _ = evaluate(nsfw, dataset, batch_size=1, resamples=200)
    assert single["auroc"] == pytest.approx(report["auroc"]) and single["auroc_ci"] == report["auroc_ci"]
    assert "AUROC" in format_table(report) and "by folder:" in format_table(report)


def test_text_model_with_score_key_and_group_by(text, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dataset = load_dataset(write_texts(tmp_path / "texts.jsonl.gz"))
    report, rows = evaluate(text, dataset, score_key="hate", group_by="source", resamples=300, seed=3)
    assert report["score"] == "outcome.scores['hate']" and report["positive_label"] == "hate"
    assert report["declined"] == {"empty": 1} and report["n"] == len(TEXT_ROWS) - 1
    assert [r["ref"] for r in rows] == [s.ref for s in dataset.samples]  # sorted by length to run, not to report
    outcomes = text.predict_texts([r["text"] for r in TEXT_ROWS])
    for row, outcome in zip(rows, outcomes, strict=True):
        assert row["score"] == (None if outcome.score is None else pytest.approx(outcome.scores["hate"]))
    plain, _ = evaluate(text, dataset, resamples=0)  # outcome.score: text/1's largest harm score
    assert plain["score"] == "outcome.score" and plain["positive_label"] == "hate"
    assert "--score-key" in plain["notes"][0]
    groups = report["by_group"]
    assert set(groups) == {"hand", "forum"}
    assert groups["forum"]["declined"] == {"empty": 1} and groups["hand"]["n"] == 12
    for name in ("auroc", "average_precision", "recall", "fpr", "accuracy"):
        value, ci = report[name], report[f"{name}_ci"]
        assert value is not None and ci is not None and ci[0] <= value <= ci[1], name
    again, _ = evaluate(text, dataset, score_key="hate", group_by="source", resamples=300, seed=3)
    assert again["auroc_ci"] == report["auroc_ci"] and again["recall_ci"] == report["recall_ci"]
    assert again["by_group"]["hand"]["auroc_ci"] == groups["hand"]["auroc_ci"]
    nested, _ = evaluate(text, dataset, score_key="hate", group_by="extra.type", resamples=0)
    assert set(nested["by_group"]) == {"threat", "slur", "dehumanising", "none"}


def test_text_model_reads_meme_captions(text, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dataset = load_dataset(write_memes(tmp_path / "memes", count=8))
    report, rows = evaluate(text, dataset, score_key="hate", resamples=0)
    assert report["n"] == 8
    assert rows[0]["score"] == pytest.approx(text.predict_texts([dataset.samples[0].text])[0].scores["hate"])


def test_wrong_pairings_and_columns_are_refused(nsfw, text, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    texts = load_dataset(write_texts(tmp_path / "t.csv"))
    folders = load_dataset(write_media_folders(tmp_path / "media"))
    with pytest.raises(ValueError, match="holds texts only"):
        evaluate(nsfw, texts)
    with pytest.raises(ValueError, match=r"reads text; .* is a folder of media"):
        evaluate(text, folders)
    with pytest.raises(DatasetError, match=r"no item .* has the column 'source'; columns: folder"):
        evaluate(nsfw, folders, group_by="source")
    with pytest.raises(ValueError, match=r"has no scores\['toxicity'\]"):
        evaluate(text, texts, score_key="toxicity", threshold=0.5)
