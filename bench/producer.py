"""Producer speed: compensator group-iterations per second, many groups batched vs one at a time.

One group-iteration is one optimization step of one group's compensator (K images through the
teacher, forward and backward). "One at a time" is the reference code's way (a batch of K
images per step); "batched" optimizes ``--groups`` groups in one batch with per-group BN
statistics. Same teacher, same data, same number of group-iterations; the ratio is what matters.

    .venv/bin/python bench/producer.py --arch convnet --groups 8
    .venv/bin/python bench/producer.py --arch resnet18 --channels 3 --image-size 32 --groups 16 --device cuda
"""

from __future__ import annotations

import json
import time
from typing import Any

import click
import torch

from infer_distill.bases import seed_for
from infer_distill.compensators import freeze, optimize_compensators
from infer_distill.config import AugmentConfig, OptimConfig
from infer_distill.teachers import create_teacher


def _rate(teacher: torch.nn.Module, bases: torch.Tensor, iterations: int, repeats: int) -> float:
    """Group-iterations per second of optimizing all groups of ``bases`` together (best of repeats)."""
    g, k = bases.shape[:2]
    classes = torch.arange(k, device=bases.device).expand(g, k)
    best = float("inf")
    for _ in range(repeats):
        gens = [torch.Generator().manual_seed(seed_for(0, i)) for i in range(g)]
        start = time.perf_counter()
        optimize_compensators(teacher, bases, classes, gens, mean=[0.5] * bases.shape[2], std=[0.25] * bases.shape[2],
                              optim=OptimConfig(iterations=iterations), augment=AugmentConfig(jitter=4))
        best = min(best, time.perf_counter() - start)  # the result's .cpu() copy synchronizes a GPU run
    return g * iterations / best


def measure(arch: str, k: int, channels: int, image_size: int, groups: int, iterations: int, repeats: int,
            device: str = "cpu") -> dict[str, Any]:
    """Group-iterations/s one group at a time and ``groups`` batched, and their ratio, on ``device``."""
    torch.manual_seed(0)
    teacher = create_teacher(arch, k, in_channels=channels, image_size=image_size)
    with torch.no_grad():
        teacher.train()(torch.rand(32, channels, image_size, image_size))
    teacher = freeze(teacher).to(device)
    bases = torch.randint(0, 256, (groups, k, channels, image_size, image_size), generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8).to(device)
    _rate(teacher, bases[:1], 2, 1)  # warm-up: kernel selection, allocator
    _rate(teacher, bases, 2, 1)
    one = _rate(teacher, bases[:1], iterations, repeats)
    many = _rate(teacher, bases, iterations, repeats)
    return {"arch": arch, "k": k, "shape": [channels, image_size, image_size], "groups": groups, "device": device,
            "threads": torch.get_num_threads(), "one_group_it_per_s": round(one, 2), "batched_group_it_per_s": round(many, 2),
            "ratio": round(many / one, 2)}


@click.command()
@click.option("--arch", default="convnet", show_default=True)
@click.option("--classes", "k", default=10, show_default=True, help="K, images per group.")
@click.option("--channels", default=1, show_default=True)
@click.option("--image-size", default=28, show_default=True)
@click.option("--groups", default=8, show_default=True, help="Groups in the batched run.")
@click.option("--iterations", default=10, show_default=True, help="Steps per timed run.")
@click.option("--repeats", default=3, show_default=True, help="Timed runs per mode (best is kept).")
@click.option("--threads", default=0, help="torch.set_num_threads (0 = torch's default).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N.")
@click.option("--json", "as_json", is_flag=True)
def main(arch: str, k: int, channels: int, image_size: int, groups: int, iterations: int, repeats: int, threads: int,
         device: str, as_json: bool) -> None:
    """Print group-iterations/s one group at a time and batched, and their ratio."""
    if threads:
        torch.set_num_threads(threads)
    report = measure(arch, k, channels, image_size, groups, iterations, repeats, device)
    one, many = report["one_group_it_per_s"], report["batched_group_it_per_s"]
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"{arch}, K={k}, {channels}x{image_size}x{image_size}, {torch.get_num_threads()} thread(s)")
    click.echo(f"one group at a time : {one:8.2f} group-iterations/s")
    click.echo(f"{groups:3d} groups batched   : {many:8.2f} group-iterations/s")
    click.echo(f"ratio batched / one : {many / one:8.2f}x")


if __name__ == "__main__":
    main()
