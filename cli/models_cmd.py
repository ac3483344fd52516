"""``deepscreen models``: build the default repository, list it, verify checksums."""

from __future__ import annotations

import json

import click

from cli.settings_check import settings_or_exit
from ml.manifest import ModelError
from ml.repository import ModelRepository


@click.group()
def models() -> None:
    """The model repository (MODEL_REPOSITORY)."""


@models.command("build")
@click.option("--only", multiple=True, help="Build only these models (repeatable)")
@click.option("--force", is_flag=True, help="Rebuild versions that already exist")
def build(only: tuple[str, ...], force: bool) -> None:
    """Build the default models from packages that ship weights (no network needed)."""
    from ml.build.builders import BUILDERS, builder

    root = settings_or_exit().model_repository
    names = list(only) or list(BUILDERS)
    unknown = set(names) - set(BUILDERS)
    if unknown:
        raise click.BadParameter(f"no builder for {sorted(unknown)}; known: {', '.join(BUILDERS)}")
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        click.echo(f"building {name} …", nl=False)
        manifest = builder(name)(root, force)
        click.echo(f" {manifest.name}/{manifest.version} ({len(manifest.files)} files)")
    click.echo(f"model repository ready at {root}")


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_models(as_json: bool) -> None:
    """Models and versions in the repository."""
    repo = ModelRepository(settings_or_exit().model_repository)
    states = _states(repo)
    rows = []
    for name in repo.names():
        live = next((v for v, s in states.get(name, {}).items() if s == "live"), None)
        rows.append({**repo.manifest(name, live).summary(), "versions": repo.versions(name),
                     "states": states.get(name, {})})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no models in {repo.root} (run `deepscreen models build`)")
    for row in rows:
        versions = ",".join(f"{v}({row['states'].get(v, '?')})" for v in row["versions"])
        click.echo(f"{row['name']:<12} live v{row['version']:<4} versions {versions:<28} "
                   f"{row['task']:<10} {row['description']}")


def _states(repo: ModelRepository) -> dict[str, dict[str, str]]:
    """name → version → state from the database (registering new versions); empty without a database."""
    from core import model_registry

    try:
        model_registry.serving(repo)
        out: dict[str, dict[str, str]] = {}
        for row in model_registry.versions():
            out.setdefault(row["name"], {})[row["version"]] = row["state"]
        return out
    except Exception as exc:  # no database yet (before `deepscreen db upgrade`): the folders alone
        click.echo(f"(database unavailable, showing the newest versions: {exc.__class__.__name__})", err=True)
        return {}


@models.command("verify")
@click.argument("names", nargs=-1)
def verify(names: tuple[str, ...]) -> None:
    """Check every file of every version against its manifest's sha256."""
    repo = ModelRepository(settings_or_exit().model_repository)
    failed = 0
    for name in names or repo.names():
        for version in repo.versions(name) or [""]:
            try:
                repo.manifest(name, version or None).verify()
                click.echo(f"ok      {name}/{version}")
            except ModelError as exc:
                failed += 1
                click.echo(f"REFUSED {name}/{version}: [{exc.code}] {exc}", err=True)
    if failed:
        raise SystemExit(1)
