"""``deepscreen``: run the service, administer it, build models, scan files."""

from __future__ import annotations

import click

from cli import admin, models_cmd, scan, serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """deepscreen: screen uploaded media for deepfakes and hateful memes."""


@main.group()
def train() -> None:
    """Train model heads on your own data."""


for command in (serve.up, serve.web, serve.worker, serve.beat, admin.db, admin.token, admin.apikey,
                models_cmd.models, scan.scan):
    main.add_command(command)


if __name__ == "__main__":
    main()
