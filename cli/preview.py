"""`infer preview`."""

from __future__ import annotations

import click

from .options import root_argument


@click.command()
@root_argument
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--group", default=0, show_default=True, help="Which group to draw.")
@click.option("--max-classes", default=10, show_default=True, help="Columns (base slots) to draw.")
def preview(root: str, out: str, group: int, max_classes: int) -> None:
    """Draw one group: base images, compensators made visible, composites."""
    from infer_data.preview import write_preview

    path = write_preview(root, out, group=group, max_classes=max_classes)
    click.echo(f"wrote {path}")
