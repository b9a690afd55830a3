"""Materialize the instances of a distilled dataset as image files plus a pickle-free labels file.

Layouts:

- ``imagefolder``: ``OUT/{class_folder}/{instance:07d}.{ext}``, readable by
  ``torchvision.datasets.ImageFolder`` with the dataset's own class indices. Class folders are
  ``{class:0Wd}-{safe name}`` (W = max(3, digits of NC - 1)): the zero-padded prefix makes
  ImageFolder's sorted folder order equal class order, and the name part is made a safe single
  path component by :func:`safe_component`. Every class gets a folder, even one without
  instances (ImageFolder then needs ``allow_empty=True``). ``classes.json`` maps each folder to
  its class name as stored.
- ``files``: a set made by ``infer import`` back to class folders of its stored files, byte for
  byte, plus its labels (see :mod:`infer_data.export_files`).
- ``reference``: the reference INFER code's naming, ``OUT/new{class:03d}/class{class:03d}_id{id:03d}.{ext}``
  where ``id`` counts the instances of that class in instance order (group, then view).

Both write ``labels.npy`` (float32, N x NC soft-label logits, rows in ``files.txt`` order, absent
when the dataset has no soft labels), ``files.txt`` (one relative path per line) and
``targets.txt`` (hard class per line). The tree is built in a hidden temporary folder next to
``OUT`` (``.infer-tmp-export-*``, removed on failure) and renamed into place only when complete;
nothing is ever written outside it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .dataset import InferDataset, verify_choice
from .atomic import storage_errors
from .errors import ConfigError
from .export_files import check_files_layout, write_files_tree

LAYOUTS = ("imagefolder", "reference", "files")
IMAGE_FORMATS = ("png", "jpeg")
EXTENSIONS = {"png": "png", "jpeg": "jpg"}
UNSAFE_CHARS = frozenset('/\\:*?"<>|')  # path separators and characters Windows refuses in names
MAX_NAME_BYTES = 100  # the name part of a class folder, in UTF-8 bytes (file systems allow 255)


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


def safe_component(name: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """``name`` as text safe inside one path component: never a separator, never hidden.

    Characters that are not printable (NUL, newlines, escapes) or are one of ``/ \\ : * ? " < > |``
    become ``_``; leading and trailing spaces and dots are dropped; the result is cut to
    ``max_bytes`` UTF-8 bytes. It may be empty (``""``, ``"."``, ``".."``), so callers prefix it.
    """
    text = "".join("_" if c in UNSAFE_CHARS or not c.isprintable() else c for c in name).strip(" .")
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore").rstrip(" .")


def class_folders(classes: list[str]) -> list[str]:
    """Folder name of every class: ``{class:0Wd}-{safe name}``, or ``{class:0Wd}`` when nothing is left of the name.

    W = max(3, digits of NC - 1), so sorting the names (as ImageFolder does) gives class order.
    """
    width = max(3, len(str(max(len(classes) - 1, 0))))
    return [f"{c:0{width}d}-{safe}" if (safe := safe_component(name)) else f"{c:0{width}d}" for c, name in enumerate(classes)]


def instance_paths(ds: InferDataset, layout: str, ext: str) -> list[str]:
    """Relative output path of every instance, in instance order."""
    targets = ds.targets
    folders = class_folders(ds.classes)
    seen: dict[int, int] = {}
    paths = []
    for i, c in enumerate(targets):
        if layout == "imagefolder":
            paths.append(f"{folders[c]}/{i:07d}.{ext}")
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
    ds = InferDataset(root, target="class", verify=verify and layout != "files")  # files: each shard is checked as it is read
    if layout == "files":
        check_files_layout(ds.index)
    paths = instance_paths(ds, layout, EXTENSIONS[image_format])
    with storage_errors(out, resume="then export again"):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".infer-tmp-export-", dir=out.parent))  # ours alone; removed on any failure
        try:
            if layout == "files":
                image_bytes, label_bytes = write_files_tree(root, ds.index, tmp, class_folders(ds.classes), ds.targets, verify, progress)
            else:
                image_bytes, label_bytes = _write_tree(ds, tmp, paths, layout, image_format, quality, batch_size, progress)
            if out.exists():
                out.rmdir()
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return ExportSummary(out, len(paths), image_bytes, label_bytes)


def _write_tree(ds: InferDataset, tmp: Path, paths: list[str], layout: str, image_format: str, quality: int,
                batch_size: int, progress: Callable[[int], None] | None) -> tuple[int, int]:
    """Write every image, the class folders and the label files under ``tmp``; (image bytes, label bytes)."""
    folders = class_folders(ds.classes) if layout == "imagefolder" else sorted({p.rsplit("/", 1)[0] for p in paths})
    for d in folders:
        (tmp / d).mkdir()
    if layout == "imagefolder":
        (tmp / "classes.json").write_text(json.dumps(dict(zip(folders, ds.classes)), ensure_ascii=True, indent=1) + "\n")
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
    return image_bytes, _write_labels(ds, tmp, paths)


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
