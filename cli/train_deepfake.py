"""``deepscreen train deepfake``: fit the deepfake head on a folder of real faces with the SBI recipe."""

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
def train_deepfake(faces: Path, out: Path, seed: int, epochs: int, bundled_faces: bool) -> None:
    """Train the real/fake head (frozen EfficientNet-Lite0 features, SBI pseudo-fakes). Needs torch."""
    from ml.build.faces import write_bundled_faces
    from ml.build.training.deepfake_train import train

    if bundled_faces:
        written = write_bundled_faces(faces)
        click.echo(f"wrote {len(written)} bundled face photos into {faces}")
    if not faces.is_dir():
        raise click.BadParameter(f"{faces} is not a folder", param_hint="--faces")
    try:
        report = train(faces, out, seed=seed, epochs=epochs)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    summary = {k: v for k, v in report.to_json().items() if k not in ("images", "train", "held_out")}
    click.echo(json.dumps(summary, indent=2))
    click.echo(f"head written to {out} (report {out.with_suffix('.json')})")
