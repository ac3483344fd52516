"""Load settings for a command, turning a bad variable into a clean CLI error."""

from __future__ import annotations

import click

from core.settings import Settings, SettingsError, get_settings


def settings_or_exit() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
