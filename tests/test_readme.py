"""The README tells the truth about the code: its settings table is the settings' own, and every
command its command table names exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_settings_table_is_generated_from_the_settings() -> None:
    done = subprocess.run([sys.executable, "scripts/readme_tables.py", "--check"], cwd=ROOT)
    assert done.returncode == 0, "README.md's settings table is stale: run scripts/readme_tables.py"


def test_every_command_in_the_readme_exists() -> None:
    from click.testing import CliRunner

    from cli.main import main

    text = (ROOT / "README.md").read_text()
    commands = set(re.findall(r"`deepscreen ((?:[a-z]+)(?: [a-z]+)?)", text))
    runner = CliRunner()
    for command in sorted(commands):
        words = command.split()
        result = runner.invoke(main, [*words, "--help"])
        if result.exit_code != 0:  # "deepscreen scan photos/" names an argument, not a subcommand
            result = runner.invoke(main, [words[0], "--help"])
        assert result.exit_code == 0, (command, result.output)
