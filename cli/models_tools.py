"""``deepscreen models quantize | parity | import``: make, check and bring in model versions offline.

The lead wires these commands into the ``models`` group. They run on the operator's machine (build
time): torch and timm are needed only by ``import``.
"""

from __future__ import annotations

from pathlib import Path

import click

from ml.manifest import ModelError
from ml.repository import ModelRepository

repository_option = click.option(
    "--repository", type=click.Path(file_okay=False, path_type=Path), envvar="MODEL_REPOSITORY",
    default="model_repository", show_default=True, help="Model repository root (env MODEL_REPOSITORY).",
)


def _frames(folder: Path | None, count: int) -> list:  # type: ignore[type-arg]
    from ml.build.optimize.feeds import generated_frames, image_frames

    if folder is None:
        click.echo(f"no image folder given: using {count} generated images (give real ones for real numbers)",
                   err=True)
        return generated_frames(count)
    frames = image_frames(folder, count)
    if not frames:
        raise click.UsageError(f"no readable images in {folder}")
    return frames


def _manifest(repository: Path, name: str, version: str | None):  # type: ignore[no-untyped-def]
    try:
        manifest = ModelRepository(repository).manifest(name, version)
        manifest.verify()
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    return manifest


@click.command("quantize")
@click.argument("name")
@click.option("--version", default=None, help="Model version (default: the newest).")
@click.option("--role", default="classifier", show_default=True, help="Manifest file role to quantise.")
@click.option("--mode", type=click.Choice(["int8-static", "int8-dynamic", "fp16"]), required=True)
@click.option("--calibration", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of representative images (static INT8 calibration and the parity check).")
@click.option("--samples", default=32, show_default=True, help="Images used at most.")
@click.option("--force", is_flag=True, help="Register an INT8 variant even when it is slower than FP32.")
@repository_option
def quantize_cmd(name: str, version: str | None, role: str, mode: str, calibration: Path | None, samples: int,
                 force: bool, repository: Path) -> None:
    """Add an INT8 (CPU) or FP16 (CUDA) variant of a model file, after measuring it."""
    from ml.build.optimize.variants import VariantRefused, make_variant

    manifest = _manifest(repository, name, version)
    if role not in manifest.files:
        raise click.ClickException(f"{name}/{manifest.version} has no file role {role!r}")
    try:
        result = make_variant(manifest, role, mode, _frames(calibration, samples), force=force)
    except VariantRefused as exc:
        raise click.ClickException(str(exc)) from exc
    p = result.parity
    click.echo(f"{name}/{manifest.version} {role} {mode} -> {result.path.name}")
    click.echo(f"parity vs fp32: max abs diff {p.max_abs_diff:.4g}, mean {p.mean_abs_diff:.4g}, "
               f"argmax agreement {p.argmax_agreement:.1%} (n={p.n})")
    click.echo(f"CPU latency batch 1: fp32 {result.fp32_seconds * 1e3:.2f} ms, variant "
               f"{result.variant_seconds * 1e3:.2f} ms ({result.speedup:.2f}x)")
    if mode == "fp16":
        click.echo("note: FP16 is meant for CUDA; its CPU latency above is not what a GPU worker sees")


@click.command("parity")
@click.argument("name")
@click.option("--version", default=None)
@click.option("--role", default="classifier", show_default=True)
@click.option("--variant", type=click.Choice(["int8", "fp16"]), required=True)
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None)
@click.option("--samples", default=32, show_default=True)
@repository_option
def parity_cmd(name: str, version: str | None, role: str, variant: str, images: Path | None, samples: int,
               repository: Path) -> None:
    """Compare a registered variant with its FP32 file on images."""
    from ml.build.optimize.variants import compare_variant

    manifest = _manifest(repository, name, version)
    try:
        report = compare_variant(manifest, role, variant, _frames(images, samples))
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from exc
    click.echo(f"{name}/{manifest.version} {role}.{variant} vs fp32 on {report.n} inputs")
    click.echo(f"max abs diff   {report.max_abs_diff:.6g}")
    click.echo(f"mean abs diff  {report.mean_abs_diff:.6g}")
    click.echo(f"argmax agreement {report.argmax_agreement:.2%}")


def _floats(value: str | None) -> list[float] | None:
    if value is None:
        return None
    parts = [float(v) for v in value.split(",")]
    if len(parts) != 3:
        raise click.BadParameter("give three comma-separated numbers (R,G,B)")
    return parts


@click.command("import")
@click.option("--arch", type=click.Choice(["efficientnet_b4", "efficientnet_b7", "xception"]), required=True)
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--name", required=True, help="Model name to write (e.g. deepfake, or deepfake-dfdc).")
@click.option("--version", required=True)
@click.option("--input-size", type=int, default=None, help="Crop side in pixels (default per architecture).")
@click.option("--mean", default=None, help="Normalisation mean R,G,B on [0,1] pixels (default per arch).")
@click.option("--std", default=None, help="Normalisation std R,G,B (default per architecture).")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="P(fake) at which to say fake.")
@click.option("--trust-checkpoint", is_flag=True, help="Allow pickled Python objects in the checkpoint.")
@click.option("--force", is_flag=True, help="Replace an existing version of that name.")
@repository_option
def import_cmd(arch: str, checkpoint: Path, name: str, version: str, input_size: int | None, mean: str | None,
               std: str | None, threshold: float, trust_checkpoint: bool, force: bool, repository: Path) -> None:
    """Import a deepfake classifier checkpoint (timm architecture) as a new model version."""
    from ml.build.importers.timm_import import CheckpointError, import_checkpoint

    try:
        result = import_checkpoint(repository, arch, checkpoint, name, version, input_size=input_size,
                                   trust=trust_checkpoint, force=force, mean=_floats(mean), std=_floats(std),
                                   threshold=threshold)
    except (CheckpointError, ModelError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    m = result.manifest
    click.echo(f"wrote {m.directory} ({arch}, tensors matched by {result.mapping})")
    click.echo(f"ONNX vs torch max abs diff {result.max_abs_diff:.2e}")
    click.echo(f"checkpoint sha256 {result.checkpoint_sha256}; detector from {m.provenance['detector_from']}")
