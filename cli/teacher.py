"""`infer teacher train`: train a teacher checkpoint where no pretrained weights exist."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click


@click.group()
def teacher() -> None:
    """Teacher checkpoints for `infer distill`."""


@teacher.command()
@click.option("--dataset", default="embedded", show_default=True, metavar="SOURCE", help="embedded, fashion-mnist, cifar10, cifar100, imagefolder:PATH.")
@click.option("--arch", required=True, help="Architecture (convnet, resnet18, mobilenet_v2, efficientnet_b0, shufflenet_v2, resnet50).")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Checkpoint file to write.")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True, help="Peak one-cycle learning rate (SGD, Nesterov).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-root", default=None, help="Folder with torchvision-layout data (cifar10, cifar100, fashion-mnist).")
@click.option("--image-size", type=int, default=None, help="Resize image-folder images to this side.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N; auto = cuda when available.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (keys top1, arch, epochs, out); no epoch lines.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no epoch lines; the result line only.")
def train(dataset: str, arch: str, epochs: int, out: str, batch_size: int, lr: float, seed: int, data_root: str | None,
          image_size: int | None, device: str, as_json: bool, quiet: bool) -> None:
    """Train ARCH on the dataset's train split, save it, report test accuracy."""
    from infer_distill.pipeline import resolve_device
    from infer_distill.sources import create_source
    from infer_distill.teacher_train import TeacherTrainConfig, train_teacher
    from infer_distill.teachers import TEACHERS, save_teacher

    TEACHERS.get(arch)  # fail fast on a typo, before loading data
    cfg = TeacherTrainConfig(arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    train_src = create_source(dataset, "train", data_root=data_root, image_size=image_size)
    test_src = create_source(dataset, "test", data_root=data_root, image_size=image_size)
    echo = (lambda e, loss: None) if as_json or quiet else (lambda e, loss: click.echo(f"epoch {e}/{epochs}: train loss {loss:.4f}"))
    model, acc = train_teacher(cfg, train_src, test_src, on_epoch=echo, on_batch=None if quiet else _batch_progress(epochs),
                               device=resolve_device(device))
    c, h, _ = train_src.image_shape
    meta = {"dataset": train_src.spec, "epochs": epochs, "test_top1": round(100 * (acc or 0.0), 2), "seed": seed, "lr": lr}
    save_teacher(model, out, arch=arch, num_classes=len(train_src.classes), in_channels=c, image_size=h, meta=meta)
    if as_json:
        click.echo(json.dumps({"top1": meta["test_top1"], "arch": arch, "epochs": epochs, "dataset": train_src.spec, "out": out}))
    else:
        click.echo(f"{arch} on {train_src.spec}: test top-1 {meta['test_top1']:.2f}% after {epochs} epochs; saved {out} "
                   f"(use --teacher {arch}={out})")


def _batch_progress(epochs: int) -> Callable[[int, int, int], None]:
    """Progress within each epoch on stderr (:func:`infer_cli.progress.progress_bar`): one bar per epoch."""
    from .progress import progress_bar

    state: dict[str, Any] = {}

    def update(epoch: int, done: int, total: int) -> None:
        if done == 1:
            state["bar"] = progress_bar(total, desc=f"epoch {epoch}/{epochs}", unit="batch")
        bar = state["bar"]
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    return update
