"""Loader throughput of a distilled dataset, measured against the ImageFolder baseline.

Used by ``infer bench`` and ``bench/loader.py``. Every rate is instances per second over whole
epochs after one warm-up epoch, through the same batch size and the same augmentation
(CIFAR-sized images: RandomCrop(H, 4) + flip; larger: RandomResizedCrop(H) + flip).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .batches import batch_loader
from .dataset import InferDataset
from .export import export_dataset
from .transforms import RandomCropFlip, RandomResizedCropFlip

SMALL_IMAGE_MAX = 64


def throughput(loader: Iterable[Any], epochs: int) -> float:
    """Instances per second over ``epochs`` epochs after one untimed warm-up epoch."""
    for _ in loader:
        pass
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += batch[0].shape[0]
    return n / (time.perf_counter() - start)


def data_loader(ds: Dataset[Any], batch_size: int, workers: int, seed: int = 0) -> DataLoader[Any]:
    """Shuffled DataLoader with persistent workers (when any) and a seeded generator."""
    return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                      persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed))


def per_sample_transform(size: int) -> Any:
    """torchvision transforms for one float (C, H, W) image: the evaluation protocol's augmentation."""
    from torchvision.transforms import v2

    if size <= SMALL_IMAGE_MAX:
        return v2.Compose([v2.RandomCrop(size, padding=4), v2.RandomHorizontalFlip()])
    return v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])


def imagefolder_rates(ref: Path, size: int, batch_size: int, workers: Iterable[int], epochs: int) -> dict[int, float]:
    """ImageFolder + PIL decode + the same augmentation, per worker count."""
    import torchvision
    from torchvision.transforms import v2

    pil = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), per_sample_transform(size)])
    folder = torchvision.datasets.ImageFolder(str(ref), transform=pil)
    return {w: throughput(data_loader(folder, batch_size, w), epochs) for w in workers}


def infer_rates(root: str | os.PathLike[str], size: int, batch_size: int, workers: Iterable[int], epochs: int) -> dict[str, dict[int, float]]:
    """InferDataset with per-sample torchvision transforms, and with the batch transform.

    Small images: ``RandomCropFlip`` under a per-sample DataLoader; larger ones:
    ``RandomResizedCropFlip`` (fused from the uint8 factors) under :func:`~infer_data.batches.batch_loader`.
    """
    out: dict[str, dict[int, float]] = {"infer": {}, "infer-batch": {}}
    for w in workers:
        ds = InferDataset(root, transform=per_sample_transform(size))
        out["infer"][w] = throughput(data_loader(ds, batch_size, w), epochs)
        if size <= SMALL_IMAGE_MAX:
            ds = InferDataset(root, batch_transform=RandomCropFlip(4))
            out["infer-batch"][w] = throughput(data_loader(ds, batch_size, w), epochs)
        else:
            ds = InferDataset(root, batch_transform=RandomResizedCropFlip(size))
            loader = batch_loader(ds, batch_size, num_workers=w, persistent_workers=w > 0, generator=torch.Generator().manual_seed(0))
            out["infer-batch"][w] = throughput(loader, epochs)
    return out


def device_rate(root: str | os.PathLike[str], batch_size: int, device: str, epochs: int) -> float:
    """DeviceLoader (compose, augment, normalize, MixUp on ``device``), synchronized per epoch."""
    from .loader import DeviceLoader

    loader = DeviceLoader(InferDataset(root), device=device, batch_size=batch_size, normalize=True)

    class _Synced:
        def __iter__(self) -> Any:
            yield from loader
            if loader.device.type == "cuda":
                torch.cuda.synchronize(loader.device)

    return throughput(_Synced(), epochs)


def bench_dataset(root: str | os.PathLike[str], *, batch_size: int = 256, workers: tuple[int, ...] = (0, 2),
                  device: str = "cpu", epochs: int = 2, baseline: bool = True) -> dict[str, Any]:
    """All rates for one dataset, and ratios to ImageFolder over the exported reference layout.

    Returns:
        ``{"instances", "rates": {path: {workers: rate}}, "device": {device: rate},
        "ratios": {path: {workers: rate / imagefolder rate}}}``.
    """
    probe = InferDataset(root, target="class")  # also verifies every shard once up front
    size = probe.index.dataset.image_shape[1]
    result: dict[str, Any] = {"instances": len(probe), "batch_size": batch_size}
    rates = infer_rates(root, size, batch_size, workers, epochs)
    result["device"] = {device: device_rate(root, batch_size, device, epochs)}
    if baseline:
        with tempfile.TemporaryDirectory() as tmp:
            export_dataset(root, Path(tmp) / "ref", layout="reference", image_format="jpeg", quality=75)
            rates["imagefolder"] = imagefolder_rates(Path(tmp) / "ref", size, batch_size, workers, epochs)
        result["ratios"] = {
            name: {w: r / rates["imagefolder"][w] for w, r in per.items()} for name, per in rates.items()
        }
        result["ratios"]["device"] = {w: result["device"][device] / rates["imagefolder"][w] for w in workers}
    result["rates"] = {k: v for k, v in rates.items() if v}
    return result
