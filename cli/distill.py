"""`infer distill`: dataset + teachers + ipc -> a shard folder, with progress, resumable.

Also runnable under torchrun, one process per GPU (or CPU processes with gloo); the ranks split
the shards and rank 0 writes the index::

    torchrun --nproc_per_node 8 -m infer_cli.distill --ipc 10 --teacher ... --out DIR
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from infer_distill.pipeline import Progress

logger = logging.getLogger(__name__)


@click.command()
@click.option("--dataset", default=None, metavar="SOURCE", help="embedded, fashion-mnist, cifar10, cifar100, imagefolder:PATH. [default: preset's]")
@click.option("--ipc", type=int, required=True, help="Stored-image budget per class.")
@click.option("--teacher", "teachers", multiple=True, metavar="ARCH=CKPT", help="Teacher checkpoint; repeat for M teachers.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (resumed if interrupted).")
@click.option("--preset", default=None, help="embedded, cifar10, cifar100, tinyimagenet, imagenet1k. [default: by dataset]")
@click.option("--iterations", type=int, default=None, help="Optimization steps per compensator. [default: preset's]")
@click.option("--lr", type=float, default=None, help="Adam learning rate (normalized-image units). [default: preset's]")
@click.option("--r-bn", type=float, default=None, help="Weight of the BN-statistics term. [default: preset's]")
@click.option("--seed", type=int, default=None, help="Base selection and augmentation seed. [default: 0]")
@click.option("--batch-groups", type=int, default=None, help="Groups optimized together in one batch. [default: preset's]")
@click.option("--data-root", default=None, help="Folder with torchvision-layout data (cifar10, cifar100, fashion-mnist).")
@click.option("--image-size", type=int, default=None, help="Resize image-folder images to this side. [default: preset's]")
@click.option("--base-codec", default=None, help="Base images: png (lossless), npy (lossless, zstd array), jpeg[:QUALITY]. [default: preset's]")
@click.option("--compensator-codec", default=None, help="Compensators: fp16 or int8. [default: fp16]")
@click.option("--label-codec", default=None, help="Labels: fp16, topk[:K] or none. [default: fp16]")
@click.option("--shard-size", type=int, default=None,
              help="Groups per shard (cut a set for the processes that will read it). [default: one batch of groups, at most 256 MiB raw]")
@click.option("--normalization", default=None,
              help="source (the data's own statistics), or fixed constants: imagenet (torchvision's), cifar10, cifar100, "
                   "tinyimagenet (the official code's). [default: preset's]")
@click.option("--mode", type=click.Choice(["default", "official"]), default="default", show_default=True,
              help="official: the official INFER code's choices (unclamped forward, clip on save, roll jitter, fixed normalization).")
@click.option("--clip", type=click.Choice(["forward", "save"]), default=None,
              help="forward: clamp base+u each step, |u|<=1; save: unclamped, clipped when stored. [default: mode's]")
@click.option("--jitter", type=int, default=None, help="Max random shift per step, pixels. [default: preset's]")
@click.option("--jitter-mode", type=click.Choice(["shift", "roll"]), default=None,
              help="shift: +-jitter px, zero-filled; roll: 0..jitter px, wrapped. [default: mode's]")
@click.option("--no-compensators", is_flag=True, help="M=0: random real images with static labels (the baseline).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N; auto = cuda when available.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (keys out, groups, k, m, ipc, instances, bytes, shards).")
@click.option("--name", "card_name", default=None, help="Name of the published set, for its README.md card. [default: DATASET-ipcN]")
@click.option("--license", "card_license", default=None, help="Licence of the published set (e.g. CC-BY-4.0), for its card. [default: not stated]")
def distill(dataset: str | None, ipc: int, teachers: tuple[str, ...], out: str, preset: str | None, iterations: int | None,
            lr: float | None, r_bn: float | None, no_compensators: bool, device: str, no_progress: bool, as_json: bool, mode: str,
            clip: str | None, jitter: int | None, jitter_mode: str | None, **overrides: object) -> None:
    """Optimize INFER compensators and static labels; write shards to --out."""
    from infer_distill.config import DEFAULT_PRESET, TeacherSpec, create_preset
    from infer_distill.pipeline import distill as run
    from infer_distill.sources import parse_spec

    name = preset or DEFAULT_PRESET.get(parse_spec(dataset or "embedded")[0], "cifar10")
    cfg = create_preset(name, mode=mode, dataset=dataset, ipc=ipc, teachers=tuple(TeacherSpec.parse(t) for t in teachers),
                        compensators=not no_compensators, **overrides)
    optim = {k: v for k, v in {"iterations": iterations, "lr": lr, "r_bn": r_bn, "clip": clip}.items() if v is not None}
    augment = {k: v for k, v in {"jitter": jitter, "jitter_mode": jitter_mode}.items() if v is not None}
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, **optim), augment=dataclasses.replace(cfg.augment, **augment))
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports
    index = run(cfg, out, progress=None if no_progress or not main_rank else _bar(), device=device)
    if not main_rank:
        return
    m = index.method
    if as_json:
        click.echo(json.dumps({"out": out, "groups": m.g, "k": m.k, "m": m.m, "ipc": m.ipc, "instances": index.num_instances,
                               "bytes": sum(s.bytes for s in index.shards), "shards": len(index.shards)}))
        return
    click.echo(f"wrote {out}: G={m.g} groups x (K={m.k} bases + M={m.m} compensators), "
               f"{index.num_instances} instances, {sum(s.bytes for s in index.shards)} bytes in {len(index.shards)} shard(s)")


def _bar() -> Callable[[Progress], None]:
    """A progress bar over optimization steps, with groups done as postfix (:func:`infer_cli.progress.progress_bar`:
    tqdm on a terminal, a line per 10 % in a log)."""
    from .progress import progress_bar

    state: dict[str, Any] = {}

    def update(p: Progress) -> None:
        if "bar" not in state:
            state["bar"] = progress_bar(p.steps_total, initial=p.steps_done, unit="step", desc="distill")
        bar = state["bar"]
        bar.set_postfix_str(f"groups {p.groups_done}/{p.groups_total}", refresh=False)
        bar.update(p.steps_done - bar.n)
        bar.refresh()
        if p.groups_done >= p.groups_total:
            bar.close()

    return update


if __name__ == "__main__":  # torchrun -m infer_cli.distill ...
    from .main import main

    main(["distill", *sys.argv[1:]])
