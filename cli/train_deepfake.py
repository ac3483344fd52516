"""``deepscreen train deepfake``: train the deepfake classifier on a folder of real faces with the SBI recipe."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("deepfake")
@click.option("--faces", "faces", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder of real face photos (searched recursively); one face per photo is used")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Head weights to write (.npz); a .json training report is written beside it")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=int, default=10, show_default=True,
              help="Passes over the photos, each with fresh augmentations and fresh self-blends")
@click.option("--bundled-faces", is_flag=True,
              help="First copy the real faces bundled in installed packages (skimage, matplotlib) into --faces")
@click.option("--fine-tune", "fine_tune", is_flag=True,
              help="Train the EfficientNet-Lite0 backbone end to end with the head (needs real faces and time; "
                   "also writes <out>.backbone.npz and the exported classifier <out>.onnx)")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Fine-tune only: auto = CUDA when torch sees one")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Fine-tune only")
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Fine-tune only: backbone learning rate")
@click.option("--max-steps", type=int, default=None, help="Fine-tune only: stop after this many steps")
def train_deepfake(faces: Path, out: Path, seed: int, epochs: int, bundled_faces: bool, fine_tune: bool,
                   device: str, batch_size: int, lr: float, max_steps: int | None) -> None:
    """Train the real/fake classifier on SBI pseudo-fakes. Default: a linear head on frozen EfficientNet-Lite0
    features (CPU, minutes). --fine-tune: the whole network (GPU if present). Needs torch."""
    from ml.build.faces import write_bundled_faces

    if bundled_faces:
        written = write_bundled_faces(faces)
        click.echo(f"wrote {len(written)} bundled face photos into {faces}")
    if not faces.is_dir():
        raise click.BadParameter(f"{faces} is not a folder", param_hint="--faces")
    try:
        if fine_tune:
            from ml.build.training.deepfake_finetune import fine_tune as run_fine_tune

            report = run_fine_tune(faces, out, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr,
                                   device=device, max_steps=max_steps)
        else:
            from ml.build.training.deepfake_train import train

            report = train(faces, out, seed=seed, epochs=epochs)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    summary = {k: v for k, v in report.to_json().items() if k not in ("images", "train", "held_out")}
    click.echo(json.dumps(summary, indent=2))
    click.echo(f"head written to {out} (report {out.with_suffix('.json')})")
    if fine_tune:
        click.echo(f"fine-tuned backbone {out.with_suffix('.backbone.npz')}, classifier {out.with_suffix('.onnx')}")
