"""``deepscreen train meme``: fit the meme fusion head on data in the Hateful Memes layout."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("meme")
@click.option("--data", "data", type=click.Path(file_okay=False, exists=True, path_type=Path), required=True,
              help="Folder in the Hateful Memes layout: img/, train.jsonl, dev.jsonl ({id, img, label, text})")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="New model version folder to write, e.g. model_repository/meme/2")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=int, default=100, show_default=True, help="Passes of Adam over the train split")
@click.option("--base", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="A built meme version to take the branch models from (default: build them afresh)")
@click.option("--threads", type=int, default=2, show_default=True, help="ONNX Runtime intra-op threads")
def train_meme(data: Path, out: Path, seed: int, epochs: int, base: Path | None, threads: int) -> None:
    """Train the logistic fusion head over text-branch scores, NSFW and both embeddings (numpy only)."""
    from ml.build.training.meme_train import train

    try:
        report = train(data, out, seed=seed, epochs=epochs, base=base, threads=threads)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(report.to_json(), indent=2))
    click.echo(f"model version written to {out} (report {out / 'train_report.json'})")
