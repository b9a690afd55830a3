"""Shared click parameters."""

from __future__ import annotations

import click


def _resolve_root(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A local folder for ROOT: the folder itself, or the cache mirror of a URL prefix."""
    from infer_data.remote import resolve_root

    return str(resolve_root(value))


root_argument = click.argument("root", callback=_resolve_root)
"""ROOT: a distilled dataset folder or URL prefix, resolved to a local folder before the command runs."""
