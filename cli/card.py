"""`infer card`."""

from __future__ import annotations

import click

from .options import root_argument


@click.command()
@root_argument
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the card instead of writing ROOT/README.md.")
@click.option("--force", is_flag=True, help="Replace a README.md that infer did not write (the publisher's own).")
def card(root: str, to_stdout: bool, force: bool) -> None:
    """Regenerate ROOT/README.md, the dataset card, from index.json and the shards' headers.

    The card gives the name, licence, source, K, M, G, ipc, codecs, exact bytes by field, ratios,
    teachers with checksums and how to load the set. Same dataset, same bytes. A README.md that
    infer did not write is kept unless --force.
    """
    from infer_data.card import CARD_FILENAME, card_text, write_card

    if to_stdout:
        click.echo(card_text(root), nl=False)
        return
    path = write_card(root, force=force)
    if path is None:
        raise click.ClickException(f"{root}/{CARD_FILENAME}: exists and was not written by infer; move it away, "
                                   "print the card with --stdout, or replace it with --force")
    click.echo(f"wrote {path}")
