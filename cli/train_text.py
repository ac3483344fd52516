"""``deepscreen train text``: train text/2's hate stack on labelled texts and validate it per source."""

from __future__ import annotations

import json
from pathlib import Path

import click

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "ml" / "weights" / "text_v2"


@click.command("text")
@click.option("--data", "data", type=click.Path(exists=True, path_type=Path), multiple=True, required=True,
              help="Folder or file of .jsonl / .jsonl.gz / .csv rows with text, label (1 = hateful) and optional "
                   "source / group columns; repeat for several (e.g. ../shared/data/hate, ../shared/data/toxigen)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT, show_default=True,
              help="Where the weights and train_report.json go (the text/2 builder packages ml/weights/text_v2)")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split and of every fit")
@click.option("--epochs", type=float, default=None,
              help="Fine-tuning passes over the train rows (fractions allowed; default 0.6: 54.6k texts, "
                   "~14 min on 2 cores)")
@click.option("--loso/--no-loso", default=True, show_default=True,
              help="Also refit the char model leaving each source out (a few minutes)")
@click.option("--threads", type=int, default=2, show_default=True, help="torch / ONNX Runtime threads")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the char model / pretrained scores / LOSO stage is cached (default var/cache/text_train)")
def train_text(data: tuple[Path, ...], out: Path, seed: int, epochs: float | None, loso: bool, threads: int,
               cache: Path | None) -> None:
    """Fine-tune MiniLM (LoRA) + a char n-gram model, stack and calibrate them on held-out rows, and report
    AUROC per source with bootstrap intervals. Reuses the fine-tuned adapters in OUT when nothing changed."""
    from ml.build.training.text_lora import LoraConfig
    from ml.build.training.text_train import TextTrainConfig, train

    lora = LoraConfig(seed=seed) if epochs is None else LoraConfig(seed=seed, epochs=epochs)
    try:
        report = train(list(data), out, TextTrainConfig(seed=seed, lora=lora, threads=threads), loso=loso,
                       log=lambda line: click.echo(line, err=True), cache=cache)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    held = report["held_out"]
    click.echo(json.dumps({"overall": held["overall"], "by_kind": held.get("by_kind"),
                           "auroc_by_source": {k: v["auroc"] for k, v in held["by_source"].items()}}, indent=2))
    click.echo(f"weights and report written to {out} (rebuild with `deepscreen models build --only text_v2 "
               f"--only meme_v2 --force`)")
