"""Rewrite the generated section of docs/cli.md from every command's ``--help``.

Run after changing any command, option or help text::

    .venv/bin/python scripts/gen_cli_docs.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from infer_cli.helpdoc import update

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def main() -> int:
    """Update docs/cli.md in place; prints whether it changed."""
    old = DOC.read_text(encoding="utf-8")
    new = update(old)
    if new != old:
        DOC.write_text(new, encoding="utf-8")
    print(f"{DOC}: {'updated' if new != old else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
