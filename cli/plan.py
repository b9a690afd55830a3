"""`infer plan`: what a distillation will produce, before any work and without the data."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from infer_distill.planner import Layout, Plan

FIELD_ORDER = ("base", "compensators", "labels")


@click.command()
@click.option("--dataset", default="embedded", show_default=True, metavar="SOURCE",
              help="imagenet-1k, cifar10, cifar100, tiny-imagenet, fashion-mnist, embedded, imagefolder:PATH.")
@click.option("--ipc", type=int, required=True, help="Stored-image budget per class.")
@click.option("--m", "m", type=int, default=4, show_default=True, help="Compensators per group (teachers).")
@click.option("--image-size", type=int, default=None, help="Store images at this side (image folders are resized to it).")
@click.option("--base-codec", default=None, help="Plan and choose this base codec: png, npy[:LEVEL|none], jpeg[:QUALITY], webp[:QUALITY].")
@click.option("--compensator-codec", default=None, help="Plan and choose this compensator codec: fp16, int8 (optionally :LEVEL|none).")
@click.option("--label-codec", default=None, help="Plan and choose this label codec: fp16, topk[:K], none.")
@click.option("--shard-size", type=int, default=None, help="Groups per shard, as for infer distill. [default: distill's]")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with the same numbers.")
def plan(dataset: str, ipc: int, m: int, image_size: int | None, base_codec: str | None, compensator_codec: str | None,
         label_codec: str | None, shard_size: int | None, as_json: bool) -> None:
    """G, instances, stored images, bytes by field per codec and compression ratios; decodes no images.

    Bytes marked ~ are estimates from measured bytes-per-value constants (PNG, JPEG, zstd, meta.json,
    index.json); = marks exact counts.
    """
    from infer_distill.planner import make_plan

    codecs = {"base": base_codec, "compensators": compensator_codec, "labels": label_codec}
    p = make_plan(dataset, ipc, m, codecs=codecs, image_size=image_size, shard_size=shard_size)
    click.echo(json.dumps(p.to_dict(), indent=1) if as_json else "\n".join(render(p)))


def _n(value: int, estimate: bool) -> str:
    return f"{'~' if estimate else '='} {value:>15,}"


def render(p: Plan) -> list[str]:
    """The plan as text lines."""
    s = p.source
    c, h, w = s["image_shape"]
    lines = [
        f"{s['spec']}: {s['images']:,} train images, K={p.k} classes, {c}x{h}x{w}, {s['train_bytes']:,} train bytes ({s['bytes_note']})",
        f"ipc {p.ipc}, M={p.m}: G={p.g} groups, {p.stored_images:,} stored images (budget ipc*K = {p.budget_images:,}), "
        f"{p.instances:,} instances (K*(M+1)*G)",
        "",
        f"bytes by field over {p.g} groups (~ estimate from measured bytes per value, = exact):",
    ]
    for name in FIELD_ORDER:
        for i, fb in enumerate(p.fields[name]):
            lines.append(f"  {name if i == 0 else '':<14}{fb.codec:<18}{_n(fb.bytes, fb.estimate)}")
    for lay in p.layouts:
        lines += ["", *_layout(lay, p.shard_size)]
    return lines + ["", *_reference(p), "", *_ratios(p)]


NOTES = {"metadata": "meta.json per group + index.json", "container": "tar headers, padding, end blocks"}


def _layout(lay: Layout, shard_size: int) -> list[str]:
    what = {"chosen": "the codecs infer distill would use", "uncompressed": "exact payload",
            "compact": "lossy bases, int8, top-10"}.get(lay.name, "")
    out = [f"layout {lay.name} ({', '.join(lay.codecs[f] for f in FIELD_ORDER)}; {what}), "
           f"{lay.shards} shard(s) of up to {shard_size} group(s):"]
    for key, value in lay.bytes.items():
        note = NOTES.get(key, f"{100 * lay.ratio_to_train_bytes:.4f}% of the train bytes" if key == "total" else "")
        out.append(f"  {key:<14}{_n(value, key in lay.estimated)}   {note}".rstrip())
    return out


def _reference(p: Plan) -> list[str]:
    r = p.reference_layout
    return [
        f"reference layout (one JPEG q75 file per instance + one fp32 label per instance), {r['instances']:,} instances:",
        f"  {'images':<14}{_n(r['image_bytes'], True)}",
        f"  {'labels':<14}{_n(r['label_bytes'], False)}",
        f"  {'total':<14}{_n(r['total'], True)}   reference / chosen ~ {p.ratios['reference_over_chosen']:.2f}x",
    ]


def _ratios(p: Plan) -> list[str]:
    s, paper = p.source, p.ratios["paper"]
    layouts = ", ".join(f"{lay.name} ~{100 * lay.ratio_to_train_bytes:.4f}%" for lay in p.layouts)
    return [
        f"compression ratio against the {s['name']} train set:",
        f"  paper convention  {100 * paper['total']:.2f}% = {p.budget_images:,} budget images / {s['images']:,} "
        f"({100 * paper['images']:.2f}%) + {p.budget_images:,} fp32 {p.k}-d labels / {s['train_bytes']:,} bytes "
        f"({100 * paper['labels']:.2f}%); compensators and the (M+1)x instances' labels not charged",
        f"  stored images     {100 * p.ratios['stored_images_over_train_images']:.2f}% = {p.stored_images:,} / {s['images']:,}",
        f"  bytes on disk, labels included: {layouts}",
    ]

