"""``deepscreen eval NAME --data PATH``: measure a model version on a labelled set before it goes live."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ml.manifest import ModelError


@click.command("eval")
@click.argument("name")
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True,
              help="Folder with real/ and fake/ (images or videos), or a Hateful Memes .jsonl file.")
@click.option("--version", default=None, help="Model version (default: the newest).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("eval_out"),
              show_default=True, help="Folder for the JSON report, per-item rows and ROC curve PNG.")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--max-frames", default=16, show_default=True, help="Frames sampled per video.")
@click.option("--providers", envvar="ONNX_PROVIDERS", default="auto", show_default=True)
@click.option("--threads", default=0, show_default=True, help="ONNX Runtime intra-op threads (0: all cores).")
@click.option("--repository", type=click.Path(file_okay=False, path_type=Path), envvar="MODEL_REPOSITORY",
              default="model_repository", show_default=True)
def eval_cmd(name: str, data: Path, version: str | None, out: Path, batch_size: int, max_frames: int,
             providers: str, threads: int, repository: Path) -> None:
    """Evaluate a model version: AUROC, accuracy at its threshold, confusion matrix, ROC curve."""
    from ml.build.evaluate import draw_roc, evaluate, format_table, load_samples
    from ml.repository import ModelRepository
    from ml.runtime import choose_providers

    try:
        samples = load_samples(data)
        pipeline = ModelRepository(repository).load(name, choose_providers(providers), threads, version)
    except (ValueError, ModelError) as exc:
        raise click.ClickException(str(exc)) from exc
    report, rows = evaluate(pipeline, samples, dataset=str(data), batch_size=batch_size, max_frames=max_frames)
    stem = f"{report.model}-{report.version}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    (out / f"{stem}.items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    png = draw_roc(report, out / f"{stem}-roc.png")
    click.echo(format_table(report))
    click.echo(f"report {out / f'{stem}.json'} · ROC {png}")
