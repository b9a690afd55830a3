"""``infer import``: pack another method's distilled image folder into the format (M = 0).

Input (SRe2L / RDED style): ``SRC/<class folder>/<image files>``, any number of images per class.
Class ids follow the sorted folder names; class names come from ``SRC/classes.json`` (written by
``infer export``: folder -> name), ``classes.txt`` or ``words.txt`` (see
:func:`infer_distill.imagefolder.class_names`), else the folder names. Images are taken in
sorted (class folder, file name) order: image n of that order is instance n of the set and row n
of the label files.

Labels, optional (without them the set keeps hard labels only):

- ``SRC/labels.npy`` (or ``--labels FILE``): float (N, NC) soft-label logits, one row per image;
- ``--crops DIR``: per image ``DIR/<class folder>/<file stem>.npy``, float (R, 5 + NC): R crops,
  each top, left, height, width (fractions of the image side), flip (0 or 1) and NC logits, as
  SRe2L/FKD-style relabelling stores them (labels codec ``crops``).

Groups hold K images, K the largest divisor of N not above ``group_size`` (so no group is
partial); with the ``passthrough`` base codec (the default) every file's bytes are stored
unchanged, two members per group. There are no compensators and no compensator member.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infer_data import DatasetIndex, DatasetInfo, GroupRecord, MethodInfo, ShardWriter, __version__
from infer_data.card import card_provenance, publish_card
from infer_data.codecs import parse_codec
from infer_data.errors import ConfigError, DatasetNotFoundError, FormatError
from infer_data.image_codecs import decode_image
from infer_data.imageheaders import JPEG_MAGIC, PNG_MAGIC

from .imagefolder import IMAGE_SUFFIXES, class_names

logger = logging.getLogger(__name__)

DEFAULT_GROUP_SIZE = 256  # most images per group; K is the largest divisor of N up to this
MAX_LABEL_FILE_BYTES = 1 << 34  # a labels .npy larger than this is refused (16 GiB)


@dataclass
class ImportPlan:
    """What was found in the source folder."""

    src: Path
    folders: list[str]  # class folders, sorted; index = class id
    classes: list[str]  # class names
    files: list[Path]  # every image, sorted by (class folder, name)
    targets: list[int]  # class id of each file
    chw: tuple[int, int, int]
    file_format: str  # "jpeg" or "png" when every file is one, else ""


def scan_source(src: str | os.PathLike[str], *, skip: Path | None = None) -> ImportPlan:
    """Find the class folders and images of ``src`` (``skip``: a folder inside it that is no class).

    Raises:
        DatasetNotFoundError: no such folder, or no images in it.
        ConfigError: fewer than 2 class folders.
        FormatError: an image that cannot be read.
    """
    root = Path(src)
    if not root.is_dir():
        raise DatasetNotFoundError(f"{src}: no such folder; give a folder of class folders of images")
    skipped = skip.resolve() if skip is not None else None
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.resolve() != skipped)
    if len(folders) < 2:
        raise ConfigError(f"{src}: {len(folders)} class folder(s); a distilled image folder has one folder per class (at least 2)")
    files, targets = [], []
    for c, folder in enumerate(folders):
        found = sorted(p for p in (root / folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        targets += [c] * len(found)
    if not files:
        raise DatasetNotFoundError(f"{src}: the class folders hold no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    chw, _ = _probe(files[0])
    formats = {_magic_format(p) for p in files}
    return ImportPlan(root, folders, _names(root, folders), files, targets, chw, formats.pop() if len(formats) == 1 else "")


def _names(root: Path, folders: list[str]) -> list[str]:
    path = root / "classes.json"
    if not path.is_file():
        return class_names(root, folders)
    try:
        table = json.loads(path.read_bytes()[: 64 << 20])
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{path}: not valid JSON; it must map each class folder to its name, or remove it") from None
    if not isinstance(table, dict) or not all(isinstance(table.get(f), str) for f in folders):
        raise ConfigError(f"{path}: must map every class folder to a name (as `infer export` writes it), or remove it")
    return [table[f] for f in folders]


def _probe(path: Path) -> tuple[tuple[int, int, int], str]:
    """(C, H, W) and PIL mode of an image file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            c = 1 if im.mode in ("L", "I", "I;16", "1") else 3
            return (c, im.size[1], im.size[0]), im.mode
    except OSError as exc:
        raise FormatError(f"{path}: cannot read image ({exc}); remove or replace the file") from None


def _magic_format(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(8)
    return "jpeg" if head.startswith(JPEG_MAGIC) else "png" if head.startswith(PNG_MAGIC) else ""


def group_size_for(n: int, limit: int = DEFAULT_GROUP_SIZE) -> int:
    """The largest divisor of ``n`` that is at most ``limit`` (every group then holds exactly K images).

    Example:
        >>> group_size_for(100), group_size_for(2000), group_size_for(97, 50)
        (100, 250, 1)
    """
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def load_labels(path: Path, n: int, num_classes: int) -> np.ndarray:
    """float32 (N, NC) soft-label logits from a ``.npy`` file (never unpickled).

    Raises:
        ConfigError: a file that is not a float .npy of that shape with finite values.
    """
    if path.stat().st_size > MAX_LABEL_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_LABEL_FILE_BYTES} bytes; labels are N x classes floats")
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise ConfigError(f"{path}: not a .npy array ({' '.join(str(exc).split())[:120]}); save the labels with numpy.save") from None
    if arr.dtype.kind != "f" or arr.shape != (n, num_classes):
        raise ConfigError(f"{path}: holds {arr.dtype} {arr.shape}, expected float ({n}, {num_classes}): one row of logits per "
                          "image in sorted (class folder, file name) order")
    out = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ConfigError(f"{path}: holds NaN or infinite values; fix the labels")
    return out


def load_crops(crops_dir: Path, plan: ImportPlan) -> np.ndarray:
    """float32 (N, R, 5 + NC) from one ``.npy`` per image under ``crops_dir``.

    Raises:
        ConfigError: a missing file, or one of another shape, dtype or crop count than the first.
    """
    out: list[np.ndarray] = []
    width = 5 + len(plan.classes)
    for path in plan.files:
        f = crops_dir / path.parent.name / f"{path.stem}.npy"
        if not f.is_file():
            raise ConfigError(f"{f}: no crop labels for image {path}; give one .npy per image (R x (5 + classes))")
        try:
            arr = np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ConfigError(f"{f}: not a .npy array ({' '.join(str(exc).split())[:120]})") from None
        want = (out[0].shape[0] if out else None, width)
        if arr.dtype.kind != "f" or arr.ndim != 2 or arr.shape[1] != width or (want[0] is not None and arr.shape[0] != want[0]):
            raise ConfigError(f"{f}: holds {arr.dtype} {arr.shape}, expected float (R, {width}) with the same R for every image")
        out.append(arr.astype(np.float32))
    return np.stack(out)


def _codecs(plan: ImportPlan, base_codec: str, crops: np.ndarray | None, has_labels: bool) -> dict[str, Any]:
    if base_codec == "passthrough":
        if not plan.file_format:
            raise ConfigError(f"{plan.src}: the images are not all JPEG or all PNG files, so they cannot be stored as they are; "
                              "pass --base-codec png (or jpeg:Q, webp:Q) to re-encode them")
        base: dict[str, Any] = {"name": "passthrough", "format": plan.file_format}
    else:
        base = parse_codec("base", base_codec)
    labels: dict[str, Any] = {"name": "crops", "crops": int(crops.shape[1])} if crops is not None else \
        {"name": "fp16"} if has_labels else {"name": "none"}
    return {"base": base, "labels": labels}


def _read_image(path: Path, chw: tuple[int, int, int], passthrough: str) -> tuple[bytes, np.ndarray]:
    """(file bytes, uint8 (C, H, W)); a stored file must decode exactly as the reader will."""
    data = path.read_bytes()
    if passthrough:
        return data, decode_image(data, chw, str(path), {"jpeg": "jpg", "png": "png"}[passthrough])
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("L" if chw[0] == 1 else "RGB"), dtype=np.uint8)
    except OSError as exc:
        raise FormatError(f"{path}: cannot decode image ({exc}); remove or replace the file") from None
    if arr.shape[:2] != chw[1:]:
        raise FormatError(f"{path}: image is {arr.shape[1]}x{arr.shape[0]}, the first image is {chw[2]}x{chw[1]}; "
                          "every image of a set must have the same size")
    return data, arr.reshape(chw[1], chw[2], chw[0]).transpose(2, 0, 1)


def _groups(plan: ImportPlan, k: int, labels: np.ndarray | None, crops: np.ndarray | None, passthrough: str,
            sums: np.ndarray) -> Iterator[GroupRecord]:
    """The groups of K images in input order; adds per-channel sum and sum of squares (float64, (2, C)) to ``sums``."""
    for start in range(0, len(plan.files), k):
        part = range(start, start + k)
        read = [_read_image(plan.files[i], plan.chw, passthrough) for i in part]
        bases = np.stack([a for _, a in read])  # (K, C, H, W) uint8
        x = bases.astype(np.float64) / 255.0
        sums += np.stack([x.sum(axis=(0, 2, 3)), (x * x).sum(axis=(0, 2, 3))])
        yield GroupRecord(bases, np.array([plan.targets[i] for i in part], np.int64), np.arange(start, start + k, dtype=np.int64),
                          np.zeros((0, *plan.chw), np.float32), [], None if labels is None else labels[start : start + k],
                          base_files=[d for d, _ in read] if passthrough else None,
                          crops=None if crops is None else crops[start : start + k])


def import_folder(src: str | os.PathLike[str], out: str | os.PathLike[str], *, labels: str | os.PathLike[str] | None = None,
                  crops: str | os.PathLike[str] | None = None, base_codec: str = "passthrough", dataset_name: str = "imported",
                  ipc: int | None = None, group_size: int = DEFAULT_GROUP_SIZE, card_name: str = "", card_license: str = "",
                  max_shard_bytes: int = 256 << 20) -> DatasetIndex:
    """Pack the image folder ``src`` into a dataset at ``out`` (see the module docstring); writes its card.

    Args:
        labels: soft labels .npy (default ``src/labels.npy`` when present); not with ``crops``.
        crops: folder of per-image crop-label files.
        base_codec: ``passthrough`` (files stored as they are) or a writer codec (``png``, ``jpeg:90``...).
        dataset_name: ``dataset.name`` (a known name such as ``cifar10`` gives ratios to its train set).
        ipc: the stored-image budget per class (default: the largest class's image count).
        group_size: most images per group.

    Raises:
        InferError: bad input, naming the file or argument.
    """
    crops_dir = Path(crops) if crops is not None else None
    plan = scan_source(src, skip=crops_dir)
    n, nc = len(plan.files), len(plan.classes)
    default_labels = plan.src / "labels.npy"
    if labels is None and crops is None and default_labels.is_file():
        labels = default_labels
    if labels is not None and crops is not None:
        raise ConfigError("--labels and --crops both given; a set stores one kind of soft label, pass one of them")
    if group_size < 1:
        raise ConfigError(f"--group-size must be at least 1, got {group_size}")
    y = load_labels(Path(labels), n, nc) if labels is not None else None
    c = load_crops(crops_dir, plan) if crops_dir is not None else None
    codecs = _codecs(plan, base_codec, c, y is not None)
    passthrough = codecs["base"].get("format", "") if codecs["base"]["name"] == "passthrough" else ""
    k = group_size_for(n, group_size)
    counts = np.bincount(plan.targets, minlength=nc)
    info = DatasetInfo(dataset_name, plan.classes, plan.chw, [0.0] * plan.chw[0], [1.0] * plan.chw[0], source=f"import:{plan.src.resolve()}")
    method = MethodInfo(k, 0, 0, ipc or int(counts.max()), [], seed=0, producer=f"infer_distill {__version__} (infer import)")
    provenance = {"import": {"source": str(plan.src.resolve()), "images": n, "per_class": counts.tolist(),
                             "labels": "crops" if c is not None else "per image" if y is not None else "none",
                             "order": "sorted (class folder, file name); source_indices index that order"},
                  **card_provenance(card_name, card_license)}
    sums = np.zeros((2, plan.chw[0]))
    with ShardWriter(out, dataset=info, method=method, codecs=codecs, provenance=provenance, max_shard_bytes=max_shard_bytes) as w:
        for record in _groups(plan, k, y, c, passthrough, sums):
            w.write_group(record)
        pixels = n * plan.chw[1] * plan.chw[2]
        mean = sums[0] / pixels
        info.mean = [round(float(v), 6) for v in mean]
        info.std = [round(float(v), 6) for v in np.sqrt(np.maximum(sums[1] / pixels - mean * mean, 1e-12))]
    index = w.index()
    publish_card(out)  # after index.json: the card describes the finished set
    logger.info("imported %d images of %d classes into %s: K=%d, G=%d", n, nc, out, k, index.num_groups)
    return index
