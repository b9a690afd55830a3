"""`infer card`."""

from __future__ import annotations

import click

from .options import root_argument


@click.command()
@root_argument
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the card instead of writing ROOT/README.md.")
def card(root: str, to_stdout: bool) -> None:
    """Regenerate ROOT/README.md, the dataset card, from index.json and the shards' headers.

    The card gives the name, licence, source, K, M, G, ipc, codecs, exact bytes by field, ratios,
    teachers with checksums and how to load the set. Same dataset, same bytes.
    """
    from infer_data.card import card_text, write_card

    if to_stdout:
        click.echo(card_text(root), nl=False)
        return
    click.echo(f"wrote {write_card(root)}")
