"""`infer stats`."""

from __future__ import annotations

import json

import click

from .options import root_argument


@click.command()
@root_argument
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--max-exact", default=20_000, show_default=True,
              help="Encode every instance for the reference-layout size up to this many; sample beyond.")
def stats(root: str, as_json: bool, max_exact: int) -> None:
    """Exact stored bytes by field, the reference layout's bytes, and ratios to the original."""
    from infer_data.stats import compute_stats

    s = compute_stats(root, max_exact=max_exact)
    if as_json:
        click.echo(json.dumps(s.to_dict(), indent=1))
        return
    st, mat = s.stored, s.materialized
    rows = [
        f"{s.dataset}: G={s.groups} K={s.k} M={s.m} -> {s.instances} instances from {s.stored_images} stored images (ipc {s.ipc})",
        "stored bytes (exact):",
        *(f"  {name:<13}{getattr(st, name):>14,}" for name in ("base", "compensators", "labels", "metadata", "container", "total")),
        f"reference layout (JPEG q75 per instance + fp32 label per instance){'' if mat.exact else ', estimated from ' + str(mat.sampled) + ' instances'}:",
        f"  {'images':<13}{mat.image_bytes:>14,}",
        f"  {'labels':<13}{mat.label_bytes:>14,}",
        f"  {'total':<13}{mat.total:>14,}",
        f"  reference / stored = {s.ratios['reference_layout_over_stored']:.2f}x",
    ]
    if s.original:
        o = s.original
        rows += [
            f"original {o['name']} train set: {o['images']:,} images, {o['bytes']:,} bytes",
            f"  stored bytes / original       = {100 * s.ratios['stored_bytes_over_original']:.4f}%",
            f"  reference bytes / original    = {100 * s.ratios['reference_bytes_over_original']:.4f}%",
            f"  stored images / original      = {100 * s.ratios['stored_images_over_original']:.4f}%",
        ]
    else:
        rows.append("original dataset unknown: no ratio to it")
    click.echo("\n".join(rows))
