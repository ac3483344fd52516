"""Write the README's generated tables (settings) from the code, so they cannot drift from it.

    .venv/bin/python scripts/readme_tables.py          # rewrite README.md in place
    .venv/bin/python scripts/readme_tables.py --check  # exit 1 if README.md is stale (tests run this)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def settings_table() -> str:
    from core.settings import Settings

    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(empty)" if default in ("", None) else str(default)
        rows.append(f"| `{name.upper()}` | `{shown}` | {field.description} |")
    return "\n".join(rows)


def render(text: str) -> str:
    return re.sub(r"(<!-- settings -->\n).*?(<!-- /settings -->)",
                  lambda m: m.group(1) + settings_table() + "\n" + m.group(2), text, flags=re.S)


def main() -> int:
    path = ROOT / "README.md"
    current = path.read_text()
    wanted = render(current)
    if "--check" in sys.argv:
        return 0 if current == wanted else 1
    path.write_text(wanted)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
