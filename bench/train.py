"""Training-step throughput: DeviceLoader vs InferDataset + DataLoader vs ImageFolder (reference layout).

One distilled CIFAR-10-shaped dataset (K=10 real CIFAR-10 bases, M=4, ipc 50 -> 1750 instances,
written as in ``bench/loader.py``) is exported in the reference code's layout (one JPEG q75 file
per instance plus labels.npy). Every path then feeds the *same* student the same protocol,
side by side in one run:

- ``device``: :class:`infer_data.loader.DeviceLoader` (data resident on ``--device``; per-sample
  crop+flip, normalize and MixUp there, no workers),
- ``infer-w0`` / ``infer-w2``: ``InferDataset(batch_transform=RandomCropFlip(4))`` + ``DataLoader``
  with 0 / 2 workers, then normalize + MixUp on ``--device``,
- ``imagefolder-w0`` / ``imagefolder-w2``: ``torchvision.datasets.ImageFolder`` over the export with
  PIL decode + ``RandomCrop(32, 4)`` + flip per sample, soft labels looked up from labels.npy,
  then normalize + MixUp on ``--device``.

Measured per path: loader-only instances/s (batches produced, ready for the model) and
training-step instances/s (forward, KL loss, backward, AdamW step), plus the share of a training
step spent waiting for data. Ratios are against ``imagefolder-w2``. On CUDA it also measures the
device's copy bandwidth and the loader's output rate as a fraction of it.

Usage::

    python bench/train.py --cifar /tmp/cifar10/train [--device cuda] [--arch resnet18] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loader import IPC, M, num_groups, real_images, write_bench_dataset

from infer_data import InferDataset
from infer_data.compose import normalize
from infer_data.export import export_dataset
from infer_data.loader import DeviceLoader
from infer_data.mixup import mixup_batch
from infer_data.transforms import RandomCropFlip

Batch = tuple[torch.Tensor, torch.Tensor]


class SoftImageFolder(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """ImageFolder over the exported reference layout, returning each file's stored soft label."""

    def __init__(self, root: Path, transform: Callable[[object], torch.Tensor]) -> None:
        self.folder = torchvision.datasets.ImageFolder(str(root), transform=transform)
        rows = {line: i for i, line in enumerate((root / "files.txt").read_text().split())}
        labels = np.load(root / "labels.npy", allow_pickle=False)
        order = [rows[os.path.relpath(path, root)] for path, _ in self.folder.samples]
        self.labels = torch.from_numpy(labels[order])  # (N, NC) in ImageFolder order

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.folder[i][0], self.labels[i]


def host_batches(loader: DataLoader, mean: torch.Tensor, std: torch.Tensor, device: torch.device,
                 gen: torch.Generator) -> Iterator[Batch]:
    """A DataLoader's (images in [0, 1], logits) moved to ``device``, normalized and MixUp-ed there."""
    for x, y in loader:
        x = normalize(x.to(device, non_blocking=True), mean, std)
        x, y, _ = mixup_batch(x, y.to(device, non_blocking=True), beta=1.0, generator=gen)
        yield x, y


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_rate(make: Callable[[], Iterable[Batch]], device: torch.device, epochs: int) -> float:
    """Instances/s of batches produced on ``device`` (one warm-up epoch first)."""
    it = make()
    for _ in it:
        pass
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for x, _ in it:
            n += x.shape[0]
    _sync(device)
    return n / (time.perf_counter() - start)


def train_rate(make: Callable[[], Iterable[Batch]], model: torch.nn.Module, device: torch.device, steps: int) -> float:
    """Instances/s of full training steps (2 warm-up steps first), cycling epochs as needed."""
    from infer_distill.train_student import kd_loss

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    it, done, n, start = make(), 0, 0, 0.0
    while done < steps + 2:
        for x, y in it:
            if done == 2:
                _sync(device)
                n, start = 0, time.perf_counter()
            with amp:
                loss = kd_loss(model(x), y, 30.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n, done = n + x.shape[0], done + 1
            if done >= steps + 2:
                break
    _sync(device)
    return n / (time.perf_counter() - start)


def copy_bandwidth(device: torch.device) -> float:
    """Bytes/s read + written by a 1 GiB device-to-device copy (CUDA only)."""
    x = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    _sync(device)
    start = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    _sync(device)
    return 2 * 10 * x.numel() / (time.perf_counter() - start)


def make_paths(root: Path, ref: Path, device: torch.device, batch: int) -> dict[str, Callable[[], Iterable[Batch]]]:
    """Name -> factory of a fresh batch iterable, for every compared path."""
    ds = InferDataset(root)
    mean, std = ds.mean.to(device), ds.std.to(device)
    per_sample = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True),
                             v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()])

    def dl(dataset: Dataset, workers: int) -> Callable[[], Iterable[Batch]]:
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0,
                            pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))

        class _Again:  # re-iterable: each pass is one epoch of the same DataLoader
            def __iter__(self) -> Iterator[Batch]:
                return host_batches(loader, mean, std, device, torch.Generator().manual_seed(1))

        return lambda: _Again()

    infer_host = InferDataset(root, batch_transform=RandomCropFlip(4))
    folder = SoftImageFolder(ref, per_sample)
    return {
        "device": lambda: DeviceLoader(ds, batch_size=batch, device=device, augment="crop", normalize=True,
                                       channels_last=device.type == "cuda"),
        "infer-w0": dl(infer_host, 0), "infer-w2": dl(infer_host, 2),
        "imagefolder-w0": dl(folder, 0), "imagefolder-w2": dl(folder, 2),
    }


def run(args: argparse.Namespace, tmp: Path) -> dict:
    from infer_distill.teachers import create_teacher

    device = torch.device(args.device)
    root, ref = tmp / "infer", tmp / "ref"
    write_bench_dataset(root, real_images(args.cifar, 10, num_groups(IPC, 10, M), seed=0), seed=0)
    export_dataset(root, ref, layout="reference", image_format="jpeg", quality=75)
    results: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{os.cpu_count()}",
                     "arch": args.arch, "batch": args.batch, "threads": torch.get_num_threads(), "instances": len(InferDataset(root)), "paths": {}}
    for name, make in make_paths(root, ref, device, args.batch).items():
        torch.manual_seed(0)
        model = create_teacher(args.arch, 10, in_channels=3, image_size=32).to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        results["paths"][name] = {"loader": loader_rate(make, device, args.epochs),
                                  "train": train_rate(make, model, device, args.steps)}
        print(f"  {name:<15} loader {results['paths'][name]['loader']:>10,.0f}/s   "
              f"train step {results['paths'][name]['train']:>8,.0f}/s", flush=True)
    if device.type == "cuda":
        results["copy_bandwidth"] = copy_bandwidth(device)
    return results


def report(r: dict) -> None:
    paths, base = r["paths"], r["paths"]["imagefolder-w2"]
    print(f"\n{r['device']} ({r['threads']} main-process threads), student {r['arch']}, batch {r['batch']}, {r['instances']} instances; ratios vs imagefolder-w2")
    print(f"{'path':<15}{'loader/s':>12}{'ratio':>8}{'train/s':>10}{'ratio':>8}{'data share':>12}")
    for name, p in paths.items():
        share = p["train"] / p["loader"]  # time waiting for data / time per step, if not overlapped
        print(f"{name:<15}{p['loader']:>12,.0f}{p['loader'] / base['loader']:>7.1f}x{p['train']:>10,.0f}"
              f"{p['train'] / base['train']:>7.2f}x{100 * share:>11.1f}%")
    if "copy_bandwidth" in r:
        c, h, w = 3, 32, 32
        out_bytes = paths["device"]["loader"] * c * h * w * 4  # float32 images written per second
        print(f"device copy bandwidth {r['copy_bandwidth'] / 1e9:,.0f} GB/s; DeviceLoader writes "
              f"{out_bytes / 1e9:,.1f} GB/s of images = {100 * out_bytes / r['copy_bandwidth']:.2f}% of it")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar", type=Path, help="CIFAR-10 ImageFolder train dir (bases); synthetic without it")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", default="convnet", help="student architecture (same for every path)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs of the loader-only measurement")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per path")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads of the main process")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cifar is not None and not args.cifar.is_dir():
        print(f"error: --cifar {args.cifar} is not a folder", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        results = run(args, Path(tmp))
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
