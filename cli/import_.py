"""`infer import`."""

from __future__ import annotations

import click


@click.command(name="import")
@click.argument("src", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New dataset folder to create.")
@click.option("--labels", default=None, type=click.Path(dir_okay=False),
              help="Soft labels .npy, float N x classes, rows in sorted (class folder, file name) order. [default: SRC/labels.npy if present]")
@click.option("--crops", default=None, type=click.Path(file_okay=False),
              help="Folder of per-crop labels: CROPS/<class folder>/<file stem>.npy, float R x (5 + classes) each.")
@click.option("--base-codec", default="passthrough", show_default=True,
              help="passthrough (files stored byte for byte, all JPEG or all PNG), or png, npy, jpeg:Q, webp:Q to re-encode.")
@click.option("--dataset-name", default="imported", show_default=True,
              help="dataset.name; a known one (cifar10, cifar100, tinyimagenet, imagenet1k) gives ratios to its train set.")
@click.option("--ipc", type=int, default=None, help="Stored-image budget per class. [default: the largest class's count]")
@click.option("--group-size", type=int, default=256, show_default=True,
              help="Most images per group; K is the largest divisor of the image count up to this.")
@click.option("--name", "card_name", default="", help="Name of the published set, for its README.md card.")
@click.option("--license", "card_license", default="", help="Licence of the published set, for its card.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
def import_(src: str, out: str, labels: str | None, crops: str | None, base_codec: str, dataset_name: str, ipc: int | None,
            group_size: int, card_name: str, card_license: str, as_json: bool) -> None:
    """Pack another method's distilled image folder (SRC/<class>/<images>, any count per class) into a
    dataset with M = 0: files stored as they are, soft labels per image or per crop, a README.md card."""
    import json

    from infer_distill.importer import import_folder

    index = import_folder(src, out, labels=labels, crops=crops, base_codec=base_codec, dataset_name=dataset_name, ipc=ipc,
                          group_size=group_size, card_name=card_name, card_license=card_license)
    m, total = index.method, sum(s.bytes for s in index.shards)
    summary = {"out": out, "images": index.num_instances, "classes": index.dataset.num_classes, "k": m.k, "g": m.g,
               "codecs": index.codecs, "bytes": total}
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    click.echo(f"wrote {out}: {index.num_instances} images of {index.dataset.num_classes} classes in G={m.g} groups of K={m.k}, "
               f"{total:,} bytes in {len(index.shards)} shard(s); base codec {index.codecs['base']['name']}")
