"""What `infer plan` knows about a source without loading it: image counts, classes, shape, bytes.

Known sources carry their training-split sizes in :data:`KNOWN_SOURCES` (DESIGN section 3
denominators), so planning needs no download. ``imagefolder:PATH`` is measured from the folder
itself: the files of each class folder of ``PATH/train`` are counted and one image's header is
read for its size; nothing is decoded. Its train-set bytes follow the producer's provenance
convention (``source_size`` in index.json, which ``infer stats`` reads back): raw uint8 bytes
of the split at the stored image shape.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from infer_data.errors import ConfigError, DatasetNotFoundError, FormatError

from .imagefolder import IMAGE_SUFFIXES


@dataclass(frozen=True)
class SourceSize:
    """The training split of a source, as planning needs it."""

    name: str  # canonical source name, e.g. "imagenet-1k"
    spec: str  # the spec the user gave
    images: int  # training images, N
    classes: int  # K
    image_shape: tuple[int, int, int]  # (C, H, W) as the distilled set would store it
    train_bytes: int  # denominator of byte ratios
    bytes_note: str  # what train_bytes counts
    min_per_class: int  # fewest training images of any class (bounds G: one base per class per group)
    class_names: tuple[str, ...] = ()  # known names (image folders), else empty


def _raw(n: int, c: int, h: int, w: int) -> int:
    return n * c * h * w


KNOWN_SOURCES: dict[str, SourceSize] = {s.name: s for s in (
    SourceSize("imagenet-1k", "imagenet-1k", 1_281_167, 1000, (3, 224, 224), 147_897_477_120,
               "official ILSVRC-2012 train tar", 732),
    SourceSize("cifar10", "cifar10", 50_000, 10, (3, 32, 32), _raw(50_000, 3, 32, 32), "raw uint8", 5000),
    SourceSize("cifar100", "cifar100", 50_000, 100, (3, 32, 32), _raw(50_000, 3, 32, 32), "raw uint8", 500),
    SourceSize("tiny-imagenet", "tiny-imagenet", 100_000, 200, (3, 64, 64), _raw(100_000, 3, 64, 64), "raw uint8", 500),
    SourceSize("fashion-mnist", "fashion-mnist", 60_000, 10, (1, 28, 28), _raw(60_000, 1, 28, 28), "raw uint8", 6000),
    SourceSize("embedded", "embedded", 5_000, 10, (1, 28, 28), _raw(5_000, 1, 28, 28), "raw uint8 (embedded Fashion-MNIST subset)", 500),
)}
ALIASES = {"imagenet1k": "imagenet-1k", "imagenet": "imagenet-1k", "tinyimagenet": "tiny-imagenet"}


def source_size(spec: str, *, image_size: int | None = None) -> SourceSize:
    """The sizes of the source ``spec`` (``NAME`` or ``imagefolder:PATH``), resized to ``image_size`` if given.

    Raises:
        ConfigError: an unknown source name or a bad image size.
        DatasetNotFoundError: an image folder that does not exist or holds no images.
        FormatError: an image-folder image whose header cannot be read.
    """
    if image_size is not None and image_size < 1:
        raise ConfigError(f"--image-size must be >= 1 pixel, got {image_size}")
    name, sep, arg = spec.partition(":")
    if name == "imagefolder":
        if not arg:
            raise ConfigError("--dataset imagefolder needs a path: imagefolder:PATH (PATH/train holds one folder per class)")
        return _folder_size(spec, Path(arg), image_size)
    known = KNOWN_SOURCES.get(ALIASES.get(name, name))
    if known is None or sep:
        raise ConfigError(f"--dataset {spec!r} is not a known source; use one of {', '.join(KNOWN_SOURCES)}, "
                          f"or imagefolder:PATH for a folder of class folders")
    if image_size is None:
        return SourceSize(**{**known.__dict__, "spec": spec})
    c, n = known.image_shape[0], known.images
    shape = (c, image_size, image_size)
    train = _raw(n, *shape) if known.bytes_note.startswith("raw uint8") else known.train_bytes
    return SourceSize(**{**known.__dict__, "spec": spec, "image_shape": shape, "train_bytes": train})


def _folder_size(spec: str, root: Path, image_size: int | None) -> SourceSize:
    """Count the files of ``root/train/<class>/`` and read the first image's header."""
    train = root / "train"
    if not train.is_dir():
        raise DatasetNotFoundError(f"--dataset {spec}: {train} is not a folder; an image folder needs PATH/train/<class>/ images")
    classes = sorted(e.name for e in os.scandir(train) if e.is_dir())
    counts = [_count_images(train / c) for c in classes]
    if len(classes) < 2 or min(counts) == 0:
        raise DatasetNotFoundError(f"--dataset {spec}: {train} needs at least 2 class folders, each with images "
                                   f"(found {len(classes)} classes, {sum(counts)} images)")
    c, h, w = _header_shape(_first_image(train / classes[0]))
    shape = (c, image_size, image_size) if image_size else (c, h, w)
    n = sum(counts)
    return SourceSize("imagefolder", spec, n, len(classes), shape, _raw(n, *shape),
                      "raw uint8 at the stored shape", min(counts), tuple(classes))


def _is_image(entry: os.DirEntry[str]) -> bool:
    return entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES


def _count_images(folder: Path) -> int:
    with os.scandir(folder) as it:
        return sum(1 for e in it if _is_image(e))


def _first_image(folder: Path) -> Path:
    with os.scandir(folder) as it:
        return folder / min(e.name for e in it if _is_image(e))


def _header_shape(path: Path) -> tuple[int, int, int]:
    """(C, H, W) from the image header only; C = 1 for grayscale modes, else 3 (as the source converts)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            return (1 if im.mode in ("L", "I", "I;16", "1") else 3, h, w)
    except (UnidentifiedImageError, OSError) as exc:
        raise FormatError(f"{path}: cannot read the image header ({exc}); remove or replace the file") from exc
