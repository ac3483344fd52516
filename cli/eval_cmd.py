"""``deepscreen eval NAME --data PATH``: measure a model version on a labelled set before it goes live."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ml.manifest import ModelError


@click.command("eval")
@click.argument("name")
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True,
              help="Folder with real/ + fake/ or 0/ + 1/ (images or videos; also one folder down: DIR/<group>/real/), "
                   "a Hateful Memes .jsonl ({id, img, text, label}), or a .csv / .jsonl / .jsonl.gz of text + label "
                   "(label 1 = positive).")
@click.option("--version", default=None, help="Model version (default: the newest, i.e. the live one).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("eval_out"),
              show_default=True, help="Folder for NAME-VERSION.json, .items.jsonl, -roc.png and -reliability.png.")
@click.option("--score-key", default=None,
              help="Read outcome.scores[KEY] instead of outcome.score (e.g. hate for the text model); the positive "
                   "class is then KEY and the threshold the manifest's for KEY.")
@click.option("--threshold", type=float, default=None, help="Operating point instead of the manifest's threshold.")
@click.option("--group-by", default=None,
              help="Break every figure down by a column: a jsonl / csv field (source, extra.type …) or, for folders, "
                   "`folder` (the top-level folder).")
@click.option("--record", is_flag=True,
              help="Write the figures, the data's description and the date into the version's manifest "
                   "(validation block) and MODEL_CARD.md.")
@click.option("--synthetic", is_flag=True,
              help="With --record: the data is synthetic / pseudo-labelled; record it under provenance, never as "
                   "validation.")
@click.option("--description", default=None, help="What the data is, for --record (default: its name and counts).")
@click.option("--dataset-name", default=None,
              help="Name of the data-set entry for --record (default: the path's name).")
@click.option("--split", default=None, help="How the data was held out from training, for --record.")
@click.option("--limit", type=int, default=0, help="Evaluate a seeded random subset of N items (0: all).")
@click.option("--batch", "--batch-size", "batch", type=int, default=None,
              help="Items per model call (default 64 for texts, 8 for media).")
@click.option("--bootstrap", type=int, default=1000, show_default=True,
              help="Bootstrap resamples for the 95 % intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap and of --limit.")
@click.option("--bins", type=int, default=10, show_default=True, help="Equal-width bins for calibration (ECE).")
@click.option("--max-frames", default=16, show_default=True, help="Frames sampled per video.")
@click.option("--providers", envvar="ONNX_PROVIDERS", default="auto", show_default=True)
@click.option("--threads", default=0, show_default=True, help="ONNX Runtime intra-op threads (0: all cores).")
@click.option("--repository", type=click.Path(file_okay=False, path_type=Path), envvar="MODEL_REPOSITORY",
              default="model_repository", show_default=True)
def eval_cmd(name: str, data: Path, version: str | None, out: Path, score_key: str | None, threshold: float | None,
             group_by: str | None, record: bool, synthetic: bool, description: str | None, dataset_name: str | None,
             split: str | None, limit: int, batch: int | None, bootstrap: int, seed: int, bins: int, max_frames: int,
             providers: str, threads: int, repository: Path) -> None:
    """Evaluate a model version on labelled data: AUROC, average precision, accuracy / precision / recall /
    FPR at its threshold, calibration (ECE, reliability plot), bootstrap 95 % intervals, per-group figures."""
    from ml.build.evaluate import DatasetError, evaluate, format_table, load_dataset
    from ml.repository import ModelRepository
    from ml.runtime import choose_providers

    if synthetic and not record:
        raise click.UsageError("--synthetic only says how to --record; pass --record too")
    try:
        dataset = load_dataset(data).limit(limit, seed)
        pipeline = ModelRepository(repository).load(name, choose_providers(providers), threads, version)
    except (DatasetError, ModelError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        with click.progressbar(length=len(dataset.samples), label=f"{name} on {dataset.name}",
                               file=sys.stderr) as bar:
            report, rows = evaluate(pipeline, dataset, score_key=score_key, threshold=threshold, group_by=group_by,
                                    batch_size=batch, max_frames=max_frames, bins=bins, resamples=bootstrap,
                                    seed=seed, progress=bar.update)
    except ValueError as exc:  # DatasetError included: a bad --group-by, --score-key or layout for this model
        raise click.ClickException(str(exc)) from exc
    written = write_outputs(report, rows, out, group_by)
    click.echo(format_table(report))
    click.echo("wrote " + " · ".join(str(p) for p in written))
    if record:
        from ml.build.evaluation.record import dataset_entry
        from ml.build.evaluation.record import record as record_figures

        entry = dataset_entry(report, dataset_name, description, split)
        record_figures(pipeline.manifest.directory, entry, synthetic=synthetic)
        where = "provenance.synthetic_checks (not validation)" if synthetic else "validation"
        click.echo(f"recorded {entry['name']} in {report['model']}/{report['version']} manifest {where} "
                   "and MODEL_CARD.md")


def write_outputs(report: dict[str, Any], rows: list[dict[str, Any]], out: Path, group_by: str | None) -> list[Path]:
    """The JSON report, one line per item, and the two PNGs (when matplotlib is installed)."""
    from ml.build.evaluation.datasets import column_value

    stem = f"{report['model']}-{report['version']}"
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{stem}.json", out / f"{stem}.items.jsonl"]
    with written[1].open("w") as fh:
        for row in rows:
            line = {k: v for k, v in row.items() if k != "fields"}
            if group_by:
                line["group"] = column_value(row["fields"], group_by)
            fh.write(json.dumps(line) + "\n")
    from ml.build.evaluation.plots import draw_reliability, draw_roc

    try:
        figures = {"roc": draw_roc(report, out / f"{stem}-roc.png").name}
        if report["reliability"]:
            figures["reliability"] = draw_reliability(report, out / f"{stem}-reliability.png").name
    except ImportError:
        report["notes"].append("matplotlib is not installed (pip install '.[build]'): no PNGs")
    else:
        report["figures"] = figures
        written += [out / name for name in figures.values()]
    written[0].write_text(json.dumps(report, indent=2) + "\n")
    return written
