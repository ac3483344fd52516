"""Debian's Chromium driven by Playwright (its own browser download does not work here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("DEEPSCREEN_CHROMIUM", "/usr/bin/chromium"))
QUIET = ["--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-quic", "--disable-gpu", "--disable-dev-shm-usage"]


def chromium_args() -> list[str]:
    return (["--no-sandbox"] if os.geteuid() == 0 else []) + QUIET


def require_chromium() -> str:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (scripts/ensure_services.sh)")
    return str(CHROMIUM)
