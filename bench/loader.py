"""Loader throughput and storage: InferDataset vs torchvision ImageFolder over the reference layout.

For CIFAR-shaped groups (K=10 from CIFAR-10, K=100 from Tiny-ImageNet-200 at 32 px; M=4;
ipc 50), this writes an INFER dataset, exports the same instances in the reference code's
layout (one JPEG q75 file per instance plus labels), and measures instances per second through
``DataLoader`` (batch 256, RandomCrop(32, 4) + horizontal flip, shuffled) at 0 and 2 workers,
side by side in one run:

- ``imagefolder``: ``torchvision.datasets.ImageFolder`` + PIL decode + ToTensor + RandomCrop + flip,
- ``infer``: ``InferDataset`` with the same torchvision transforms per sample,
- ``infer-batch``: ``InferDataset`` with ``batch_transform=RandomCropFlip(4)`` (one vectorized
  call per batch, same augmentation),
- ``device-cpu``: ``DeviceLoader`` on the CPU (compose, crop + flip, normalize and MixUp on
  whole batches, no workers).

Usage::

    python bench/loader.py --cifar /tmp/cifar10/train --tiny /tmp/tiny32/train [--json out.json]

Without image folders it falls back to synthetic smooth images (bytes are then not meaningful).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from infer_data import DatasetInfo, GroupRecord, InferDataset, MethodInfo, ShardWriter
from infer_data.benchmark import device_rate, imagefolder_rates, infer_rates
from infer_data.export import export_dataset

M = 4
IPC = 50
BATCH = 256
WORKERS = (0, 2)


def num_groups(ipc: int, k: int, m: int) -> int:
    """G = floor(ipc / (M/K + 1)), computed exactly in integers."""
    return (ipc * k) // (m + k)


def real_images(folder: Path | None, k: int, per_class: int, seed: int) -> np.ndarray:
    """uint8 (k, per_class, 3, 32, 32) from the first k class folders, or smooth synthetic images."""
    rng = np.random.default_rng(seed)
    if folder is None:
        yy, xx = np.mgrid[0:32, 0:32]
        base = np.stack([yy * 8, xx * 8, (yy + xx) * 4]).astype(np.float32)
        out = base[None, None] + rng.normal(0, 20, (k, per_class, 3, 1, 1))
        return np.clip(out, 0, 255).astype(np.uint8)
    from PIL import Image

    classes = sorted(p for p in folder.iterdir() if p.is_dir())[:k]
    out = np.empty((k, per_class, 3, 32, 32), np.uint8)
    for c, d in enumerate(classes):
        files = sorted(d.iterdir())
        for n, i in enumerate(rng.choice(len(files), per_class, replace=False)):
            with Image.open(files[i]) as im:
                out[c, n] = np.asarray(im.convert("RGB").resize((32, 32))).transpose(2, 0, 1)
    return out


CODEC_SETS = {
    "default (png, fp16, fp16)": None,
    "npy+zstd bases": {"base": "npy"},
    "jpeg q90, int8": {"base": {"name": "jpeg", "quality": 90}, "compensators": "int8"},
    "jpeg q75, int8, top-5": {"base": {"name": "jpeg", "quality": 75}, "compensators": "int8",
                              "labels": {"name": "topk", "k": 5}},
}


def write_bench_dataset(root: Path, images: np.ndarray, seed: int, codecs: dict | None = None) -> None:
    """G groups of K real bases, M smooth compensators (std ~0.03) and random logits."""
    k, per_class = images.shape[:2]
    g_total = num_groups(IPC, k, M)
    rng = np.random.default_rng(seed)
    info = DatasetInfo(f"bench-k{k}", [f"c{i:03d}" for i in range(k)], (3, 32, 32), [0.48, 0.45, 0.40], [0.25, 0.24, 0.26])
    method = MethodInfo(k, M, 0, IPC, [f"teacher{j}" for j in range(M)], seed=seed, producer="bench/loader.py")
    with ShardWriter(root, dataset=info, method=method, codecs=codecs) as w:
        for g in range(g_total):
            low = torch.from_numpy(rng.normal(0, 0.03, (M, 3, 8, 8)).astype(np.float32))
            comps = torch.nn.functional.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False).numpy()
            logits = rng.normal(0, 2, (k * (M + 1), k)).astype(np.float32)
            w.write_group(GroupRecord(images[:, g].copy(), np.arange(k), np.arange(k) * per_class + g, comps,
                                      list(method.teachers), logits))


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def bench_config(name: str, images: np.ndarray, tmp: Path, epochs: int) -> dict:
    """Write, export and measure one configuration; rates keyed by path then workers."""
    root, ref = tmp / f"{name}-infer", tmp / f"{name}-ref"
    write_bench_dataset(root, images, seed=0)
    export_dataset(root, ref, layout="reference", image_format="jpeg", quality=75)
    rates = infer_rates(root, 32, BATCH, WORKERS, epochs)
    rates["imagefolder"] = imagefolder_rates(ref, 32, BATCH, WORKERS, epochs)
    rates["device-cpu"] = {w: device_rate(root, BATCH, "cpu", epochs) for w in (0,)}
    codec_bytes = {}
    for label, codecs in CODEC_SETS.items():
        write_bench_dataset(tmp / f"{name}-codecs", images, seed=0, codecs=codecs)
        codec_bytes[label] = folder_bytes(tmp / f"{name}-codecs")
        shutil.rmtree(tmp / f"{name}-codecs")
    return {"instances": len(InferDataset(root)), "stored_bytes": folder_bytes(root),
            "reference_bytes": folder_bytes(ref), "codec_bytes": codec_bytes, "rates": rates}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar", type=Path, help="CIFAR-10 ImageFolder train dir (K=10 bases)")
    parser.add_argument("--tiny", type=Path, help="Tiny-ImageNet ImageFolder train dir (K=100 bases)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per measurement")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads of the main process (DataLoader workers always use 1)")
    args = parser.parse_args(argv)
    for p in (args.cifar, args.tiny):
        if p is not None and not p.is_dir():
            print(f"error: {p} is not a folder", file=sys.stderr)
            return 2
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    results = {"cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        for name, folder, k in (("k10", args.cifar, 10), ("k100", args.tiny, 100)):
            images = real_images(folder, k, num_groups(IPC, k, M), seed=0)
            results[name] = r = bench_config(name, images, Path(tmp), args.epochs)
            print(f"\n{name}: K={k} M={M} ipc={IPC} -> {r['instances']} instances "
                  f"({'real' if folder else 'synthetic'} bases)")
            print(f"  reference layout (JPEG q75 per instance + fp32 labels): {r['reference_bytes']:,} B")
            for label, nbytes in r["codec_bytes"].items():
                print(f"  stored, {label:<26}: {nbytes:>11,} B ({r['reference_bytes'] / nbytes:.2f}x smaller)")
            for workers in WORKERS:
                base = r["rates"]["imagefolder"][workers]
                line = ", ".join(f"{path} {per[workers]:,.0f}/s ({per[workers] / base:.2f}x)"
                                 for path, per in r["rates"].items() if workers in per)
                print(f"  workers={workers}: {line}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
