"""Materialize the instances of a distilled dataset as image files plus a pickle-free labels file.

Layouts:

- ``imagefolder``: ``OUT/{class_name}/{instance:07d}.{ext}``, readable by
  ``torchvision.datasets.ImageFolder``.
- ``reference``: the reference INFER code's naming, ``OUT/new{class:03d}/class{class:03d}_id{id:03d}.{ext}``
  where ``id`` counts the instances of that class in instance order (group, then view).

Both write ``labels.npy`` (float32, N x NC soft-label logits, rows in ``files.txt`` order, absent
when the dataset has no soft labels), ``files.txt`` (one relative path per line) and
``targets.txt`` (hard class per line). The tree is built in a hidden temporary folder and
renamed into place only when complete.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .dataset import InferDataset, verify_choice
from .errors import ConfigError

LAYOUTS = ("imagefolder", "reference")
IMAGE_FORMATS = ("png", "jpeg")
EXTENSIONS = {"png": "png", "jpeg": "jpg"}


@dataclass
class ExportSummary:
    """What an export wrote."""

    out: Path
    files: int
    image_bytes: int
    label_bytes: int


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (C, H, W) in [0, 1] -> uint8 (H, W, C), rounding to nearest."""
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def encode_image(hwc: np.ndarray, image_format: str, quality: int = 75) -> bytes:
    """uint8 (H, W, C) -> PNG or JPEG bytes (grayscale when C = 1)."""
    from PIL import Image

    pil = Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc)
    buf = io.BytesIO()
    if image_format == "jpeg":
        pil.save(buf, format="JPEG", quality=quality)
    else:
        pil.save(buf, format="PNG")
    return buf.getvalue()


def instance_paths(ds: InferDataset, layout: str, ext: str) -> list[str]:
    """Relative output path of every instance, in instance order."""
    targets = ds.targets
    classes = ds.classes
    seen: dict[int, int] = {}
    paths = []
    for i, c in enumerate(targets):
        if layout == "imagefolder":
            paths.append(f"{classes[c]}/{i:07d}.{ext}")
        else:
            n = seen.get(c, 0)
            seen[c] = n + 1
            paths.append(f"new{c:03d}/class{c:03d}_id{n:03d}.{ext}")
    return paths


def export_dataset(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    layout: str = "imagefolder",
    image_format: str = "png",
    quality: int = 75,
    verify: bool = True,
    batch_size: int = 512,
    progress: Callable[[int], None] | None = None,
) -> ExportSummary:
    """Write every instance of the dataset at ``root`` as an image file under ``out``.

    Args:
        layout: ``"imagefolder"`` or ``"reference"`` (see the module docstring).
        image_format: ``"png"`` (lossless) or ``"jpeg"`` at ``quality`` (the reference code uses 75).
        progress: called with the number of instances written after each batch.

    Raises:
        ConfigError: a bad option, or ``out`` exists and is not an empty folder.
        InferError: the dataset fails to load.
    """
    verify_choice(layout, "layout", LAYOUTS)
    verify_choice(image_format, "image_format", IMAGE_FORMATS)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: already exists and is not an empty folder; choose a new folder")
    ds = InferDataset(root, target="class", verify=verify)
    paths = instance_paths(ds, layout, EXTENSIONS[image_format])
    tmp = out.parent / f".{out.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    for d in sorted({p.rsplit("/", 1)[0] for p in paths}):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    image_bytes = 0
    for start in range(0, len(ds), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(ds)))
        x, _ = ds.compose_batch(idx)
        for b, i in enumerate(idx.tolist()):
            data = encode_image(to_uint8(x[b]), image_format, quality)
            (tmp / paths[i]).write_bytes(data)
            image_bytes += len(data)
        if progress is not None:
            progress(len(idx))
    label_bytes = _write_labels(ds, tmp, paths)
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return ExportSummary(out, len(paths), image_bytes, label_bytes)


def _write_labels(ds: InferDataset, tmp: Path, paths: list[str]) -> int:
    (tmp / "files.txt").write_text("\n".join(paths) + "\n")
    (tmp / "targets.txt").write_text("\n".join(map(str, ds.targets)) + "\n")
    if not ds.has_labels:
        return 0
    nc = ds.index.dataset.num_classes
    rows = ds.k * (ds.m + 1)
    logits = np.lib.format.open_memmap(tmp / "labels.npy", mode="w+", dtype=np.float32, shape=(len(ds), nc))  # (N, NC), instance order
    for g in range(ds.num_groups):  # one group at a time: memory stays at one group's labels
        logits[g * rows:(g + 1) * rows] = ds.group(g).labels.to(torch.float32).numpy()  # type: ignore[union-attr]
    logits.flush()
    del logits
    return int((tmp / "labels.npy").stat().st_size)
