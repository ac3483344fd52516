"""``deepscreen``: run the service, administer it, build models, scan files."""

from __future__ import annotations

import click

from cli import (
    admin,
    eval_cmd,
    lifecycle_cmd,
    models_cmd,
    models_tools,
    scan,
    serve,
    train_deepfake,
    train_meme,
    train_text,
)
from cli.backup import backup


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """deepscreen: screen uploaded media for deepfakes and hateful memes."""


@main.group()
def train() -> None:
    """Train model heads on your own data."""


for command in (serve.up, serve.web, serve.worker, serve.beat, admin.db, admin.token, admin.apikey,
                models_cmd.models, scan.scan, eval_cmd.eval_cmd):
    main.add_command(command)
main.add_command(backup)
main.add_command(lifecycle_cmd.reprocess_group)
for command in (models_tools.quantize_cmd, models_tools.parity_cmd, models_tools.import_cmd,
                lifecycle_cmd.promote, lifecycle_cmd.shadow, lifecycle_cmd.retire, lifecycle_cmd.compare):
    models_cmd.models.add_command(command)
train.add_command(train_deepfake.train_deepfake)
train.add_command(train_meme.train_meme)
train.add_command(train_text.train_text)


if __name__ == "__main__":
    main()
