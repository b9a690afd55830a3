"""The ``--help`` text of every command, and the section of docs/cli.md that holds it verbatim.

``scripts/gen_cli_docs.py`` rewrites that section from the commands; a test compares them, so
docs/cli.md never drifts from what ``infer ... --help`` prints. The text is rendered with click's
test runner at a fixed width, so it does not depend on the terminal.
"""

from __future__ import annotations

import re

import click
from click.testing import CliRunner

from .main import main

WIDTH = 100  # columns of the rendered help
BEGIN = "<!-- BEGIN GENERATED HELP: scripts/gen_cli_docs.py writes this section; do not edit by hand -->"
END = "<!-- END GENERATED HELP -->"
HEADING = "## Every command's `--help`"


def command_paths(group: click.Group = main, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand as a path of names, ``()`` for ``infer`` itself, sorted."""
    ctx = click.Context(group, info_name="infer")
    paths = [prefix]
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            paths += command_paths(cmd, (*prefix, name))
        elif cmd is not None:
            paths.append((*prefix, name))
    return paths


def help_text(path: tuple[str, ...]) -> str:
    """What ``infer PATH --help`` prints, at :data:`WIDTH` columns."""
    result = CliRunner().invoke(main, [*path, "--help"], prog_name="infer", terminal_width=WIDTH)
    if result.exit_code != 0:
        raise RuntimeError(f"infer {' '.join(path)} --help exited {result.exit_code}: {result.output}")
    return result.output.rstrip() + "\n"


def block(path: tuple[str, ...]) -> str:
    """The docs block of one command: a heading and its help in a code fence."""
    name = " ".join(("infer", *path))
    return f"### `{name} --help`\n\n```text\n{help_text(path)}```\n"


def generated_section() -> str:
    """The whole generated section, markers included."""
    blocks = "\n".join(block(p) for p in command_paths())
    return f"{BEGIN}\n{HEADING}\n\nGenerated from the commands themselves; the prose above explains them.\n\n{blocks}{END}\n"


def documented_blocks(doc: str) -> dict[str, str]:
    """``{"infer verify": help text}`` for every block of the generated section of ``doc``."""
    found = re.findall(r"^### `(infer[^`]*) --help`\n\n```text\n(.*?)```\n", doc, flags=re.S | re.M)
    return {name: text for name, text in found}


def update(doc: str) -> str:
    """``doc`` with its generated section replaced (or appended when it has none)."""
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        return head + generated_section() + rest.split(END, 1)[1].lstrip("\n")
    return doc.rstrip("\n") + "\n\n" + generated_section()
