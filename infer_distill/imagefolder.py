"""The ``imagefolder:PATH`` source: ``PATH/train/<class>/*`` plus ``PATH/val`` or ``PATH/test``.

Class ids follow the sorted class folder names. Class *names* are the folder names, unless
``PATH/words.txt`` (Tiny-ImageNet style, ``folder<TAB>names`` per line, other lines ignored) or
``PATH/classes.txt`` (the same two-column lines, or exactly one name per line in class order)
names them; classes.txt wins when both are there. The spec records ``PATH`` as an absolute path,
so a dataset distilled from it can be evaluated from any working directory.

Images are decoded lazily with PIL, one at a time, so a large folder costs only its file list
until images are asked for; :meth:`ImageFolderSource.load_all` decodes a whole split once for
training loops. Normalization statistics come from an evenly spaced sample of at most
:data:`STATS_SAMPLE` training images (exact for folders no larger than that), computed the
first time ``mean`` or ``std`` is read: a run with fixed normalization constants (ImageNet)
never decodes them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from infer_data.errors import ConfigError, DatasetNotFoundError, FormatError

from .sources import Source, channel_stats

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff", ".gif"}
STATS_SAMPLE = 5000
_STATS: dict[tuple[str, tuple[int, int, int]], tuple[list[float], list[float]]] = {}


def _split_dir(root: Path, split: str) -> Path:
    names = ["train"] if split == "train" else ["val", "test"]
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise DatasetNotFoundError(f"imagefolder:{root}: no {' or '.join(n + '/' for n in names)} folder of class folders; check the path")


def _scan(folder: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    lookup = {c: i for i, c in enumerate(classes)}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name not in lookup:
            raise ConfigError(f"{sub}: class folder {sub.name!r} has no counterpart in the train split; remove it or add it to train/")
        found = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [lookup[sub.name]] * len(found)
    return files, labels


NAME_FILES = ("classes.txt", "words.txt")  # first found names the classes
MAX_NAME_FILE_BYTES = 64 << 20  # ImageNet's full words.txt is 2.7 MB


def class_names(root: Path, folders: list[str]) -> list[str]:
    """Display name of each class folder, from ``classes.txt`` or ``words.txt`` in ``root`` (else the folder names).

    Raises:
        ConfigError: a names file that is too large, not UTF-8, or leaves a folder unnamed.
    """
    for file_name in NAME_FILES:
        path = root / file_name
        if path.is_file():
            return _names_from(path, folders)
    return list(folders)


def _names_from(path: Path, folders: list[str]) -> list[str]:
    if path.stat().st_size > MAX_NAME_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_NAME_FILE_BYTES} bytes; a class names file is one short line per class")
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save it as UTF-8 or remove it to use the folder names") from None
    if lines and all("\t" not in ln for ln in lines):
        if len(lines) != len(folders):
            raise ConfigError(f"{path}: {len(lines)} names for {len(folders)} class folders; give one name per class "
                              "in sorted folder order, or FOLDER<TAB>NAME lines")
        return lines
    table = dict(ln.split("\t", 1) for ln in lines if "\t" in ln)
    missing = [f for f in folders if f not in table]
    if missing:
        raise ConfigError(f"{path}: no name for class folder(s) {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}; "
                          "add FOLDER<TAB>NAME lines or remove the file to use the folder names")
    return [table[f].strip() for f in folders]


class ImageFolderSource(Source):
    """One split of an image-folder dataset; see the module docstring."""

    def __init__(self, path: str, split: str, *, image_size: int | None = None) -> None:
        root = Path(path)
        if not root.is_dir():
            raise DatasetNotFoundError(f"imagefolder:{path}: no such folder; check the path")
        train_dir = _split_dir(root, "train")
        self.folders = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
        if len(self.folders) < 2:
            raise DatasetNotFoundError(f"{train_dir}: needs at least 2 class folders, found {len(self.folders)}")
        self.classes = class_names(root, self.folders)
        self.name, self.spec, self.split = "imagefolder", f"imagefolder:{root.resolve()}", split
        self.files, labels = _scan(_split_dir(root, split), self.folders)
        if not self.files:
            raise DatasetNotFoundError(f"imagefolder:{path}: the {split} split holds no image files")
        self.targets = torch.tensor(labels, dtype=torch.int64)
        self._train_files = self.files if split == "train" else _scan(train_dir, self.folders)[0]
        self.image_shape = self._shape_of(self._train_files[0], image_size)
        self._cache: torch.Tensor | None = None

    @property  # type: ignore[override]
    def mean(self) -> list[float]:
        """Per-channel mean of the training split, [0, 1] units (computed on first use)."""
        return self._stats()[0]

    @property  # type: ignore[override]
    def std(self) -> list[float]:
        """Per-channel std of the training split, [0, 1] units (computed on first use)."""
        return self._stats()[1]

    @staticmethod
    def _shape_of(first: Path, image_size: int | None) -> tuple[int, int, int]:
        from PIL import Image

        try:
            with Image.open(first) as im:
                c = 1 if im.mode in ("L", "I", "I;16", "1") else 3
                w, h = im.size
        except OSError as exc:
            raise FormatError(f"{first}: cannot decode image ({exc}); remove or replace the file") from exc
        return (c, image_size, image_size) if image_size else (c, h, w)

    def _stats(self) -> tuple[list[float], list[float]]:
        train_files = self._train_files
        key = (str(train_files[0].parents[1].resolve()), self.image_shape)
        if key not in _STATS:
            step = max(1, len(train_files) // STATS_SAMPLE)
            sample = train_files[::step][:STATS_SAMPLE]
            _STATS[key] = channel_stats(torch.stack([self._decode(p) for p in sample]))
        return _STATS[key]

    def _decode(self, path: Path) -> torch.Tensor:
        """uint8 (C, H, W) of one file, resized (shorter side) and centre-cropped to the shape."""
        from PIL import Image

        c, h, w = self.image_shape
        try:
            with Image.open(path) as im:
                im = im.convert("L" if c == 1 else "RGB")
                if im.size != (w, h):
                    scale = max(w / im.size[0], h / im.size[1])
                    im = im.resize((max(w, round(im.size[0] * scale)), max(h, round(im.size[1] * scale))), Image.BICUBIC)
                    left, top = (im.size[0] - w) // 2, (im.size[1] - h) // 2
                    im = im.crop((left, top, left + w, top + h))
                arr = np.asarray(im, dtype=np.uint8)
        except OSError as exc:
            raise FormatError(f"{path}: cannot decode image ({exc}); remove or replace the file") from exc
        return torch.from_numpy(arr.reshape(h, w, c).copy()).permute(2, 0, 1)

    def load_all(self) -> torch.Tensor:
        """Decode the whole split once; uint8 (N, C, H, W), kept for later calls."""
        if self._cache is None:
            logger.info("decoding %d images of %s", len(self.files), self.spec)
            self._cache = torch.stack([self._decode(p) for p in self.files])
        return self._cache

    def images(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """uint8 (B, C, H, W) at ``indices`` (decoded on demand unless :meth:`load_all` ran)."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        if self._cache is not None:
            return self._cache[idx]
        return torch.stack([self._decode(self.files[int(i)]) for i in idx]) if len(idx) else torch.empty((0, *self.image_shape), dtype=torch.uint8)
