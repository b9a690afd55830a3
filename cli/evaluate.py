"""`infer evaluate`: train a student on a distilled set and report real test accuracy.

Also runnable under torchrun, one process per GPU (or CPU process with gloo)::

    torchrun --nproc_per_node 2 -m infer_cli.evaluate ROOT --epochs 80
"""

from __future__ import annotations

import json
import sys

import click


@click.command()
@click.argument("root", type=click.Path(file_okay=False))
@click.option("--test-data", default=None, metavar="SOURCE",
              help="Source spec of the real test split (embedded, cifar10, imagefolder:PATH, ...). "
                   "[default: the dataset named in the index]")
@click.option("--data-root", default=None, help="Folder holding torchvision-layout data for --test-data.")
@click.option("--preset", default=None, help="Recipe: cifar, tinyimagenet, imagenet, embedded. [default: by dataset]")
@click.option("--arch", default=None, help="Student architecture (resnet18, convnet, resnet50, ...). [default: preset's]")
@click.option("--labels", type=click.Choice(["static", "dynamic"]), default="static", show_default=True,
              help="static: stored logits; dynamic: the teachers relabel every augmented, mixed batch.")
@click.option("--teacher", "teachers", multiple=True, metavar="ARCH=CKPT", help="Teacher checkpoint (repeat) for --labels dynamic.")
@click.option("--epochs", type=int, default=None, help="Epochs. [default: preset's, shorter for dynamic labels]")
@click.option("--lr", type=float, default=None, help="Peak learning rate. [default: preset's]")
@click.option("--batch-size", type=int, default=None, help="Batch size per process. [default: preset's]")
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default=None, help="[default: preset's]")
@click.option("--weight-decay", type=float, default=None, help="[default: preset's]")
@click.option("--temperature", type=float, default=None, help="T of the KL loss. [default: preset's]")
@click.option("--mixup-beta", type=float, default=None, help="MixUp Beta parameter, 0 = off. [default: preset's]")
@click.option("--eval-every", type=int, default=None, help="Test every N epochs (and after the last).")
@click.option("--seed", type=int, default=None, help="Seed of init, order, augmentation and MixUp.")
@click.option("--mode", type=click.Choice(["default", "official"]), default="default", show_default=True,
              help="official: the official INFER validation (MixUp Beta(0.8, 0.8), fp32, per-epoch cosine, "
                   "paper_top1 = best of every 10th epoch, dynamic epochs = static / (M + 1)).")
@click.option("--precision", type=click.Choice(["bf16", "fp32"]), default=None,
              help="Student arithmetic on CUDA (CPU runs fp32). [default: bf16; official mode fp32]")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N; auto = cuda when available, else cpu.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (key top1, best_top1, paper_top1, config, history).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def evaluate(root: str, test_data: str | None, data_root: str | None, preset: str | None, teachers: tuple[str, ...],
             device: str | None, as_json: bool, no_progress: bool, mode: str, precision: str | None, **overrides: object) -> None:
    """Train a student on the distilled set at ROOT; report final-epoch test top-1."""
    from infer_data.errors import ConfigError
    from infer_distill.evaluate import config_for
    from infer_distill.evaluate import evaluate as run

    if teachers and overrides["labels"] != "dynamic":
        raise ConfigError("--teacher is only used with --labels dynamic (static labels are stored); add --labels dynamic or drop --teacher")
    amp = None if precision is None else precision == "bf16"
    config = config_for(root, preset, mode=mode, amp=amp, **overrides)
    result = run(root, config, test_data=test_data, teachers=teachers, device=device, data_root=data_root,
                 progress=not no_progress)
    if not _is_rank_zero():
        return
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
        return
    c = result.config
    click.echo(f"{c['arch']} student, {c['labels']} labels, {c['epochs']} epochs on {c['instances']} instances "
               f"({c['world_size']} process(es), {c['device']}), {result.seconds:.1f} s")
    click.echo(f"top-1 (final epoch):      {result.top1:.2f}%  on {c['test_data']}")
    click.echo(f"best epoch {result.best_epoch:>4} top-1:   {result.best_top1:.2f}%  (best of the evaluated epochs; optimistic)")
    if result.paper_top1 is not None:
        click.echo(f"paper_top1:               {result.paper_top1:.2f}%  (best of epochs 1, 1+{c['paper_every']}, ... and the last, "
                   "as the paper reports; optimistic)")


def _is_rank_zero() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


if __name__ == "__main__":  # torchrun -m infer_cli.evaluate ...
    from .main import main

    main(["evaluate", *sys.argv[1:]])
