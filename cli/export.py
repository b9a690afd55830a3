"""`infer export`."""

from __future__ import annotations

import json

import click

from .options import root_argument


@click.command()
@root_argument
@click.option("--out", required=True, type=click.Path(), help="New folder to create.")
@click.option("--layout", type=click.Choice(["imagefolder", "reference", "files"]), default="imagefolder", show_default=True,
              help="imagefolder: OUT/<class>/<n>.ext; reference: OUT/new{c:03d}/class{c:03d}_id{i:03d}.ext; "
                   "files: a set from `infer import` back to its stored files, byte for byte, and labels")
@click.option("--format", "image_format", type=click.Choice(["png", "jpeg"]), default=None,
              help="Image format [default: png for imagefolder, jpeg for reference].")
@click.option("--quality", default=75, show_default=True, help="JPEG quality.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (keys out, files, image_bytes, label_bytes, layout, format).")
@click.option("-q", "--quiet", is_flag=True, help="No progress.")
def export(root: str, out: str, layout: str, image_format: str | None, quality: int, as_json: bool, quiet: bool) -> None:
    """Materialize every instance as an image file, plus labels.npy, files.txt and targets.txt."""
    from infer_data.export import export_dataset
    from infer_data.index import read_index

    from .progress import progress_bar

    index = read_index(root)
    stored = index.codecs["base"].get("format") if layout == "files" else None  # files: the stored format, never re-encoded
    fmt = stored or image_format or ("jpeg" if layout == "reference" else "png")
    total = index.num_instances
    with progress_bar(total, desc="export", unit="img", quiet=quiet) as bar:
        summary = export_dataset(root, out, layout=layout, image_format=fmt, quality=quality, progress=bar.update)
    if as_json:
        click.echo(json.dumps({"out": str(summary.out), "files": summary.files, "image_bytes": summary.image_bytes,
                               "label_bytes": summary.label_bytes, "layout": layout, "format": fmt}))
        return
    click.echo(f"wrote {summary.files} images ({summary.image_bytes:,} bytes) and labels ({summary.label_bytes:,} bytes) to {summary.out}")
