"""Reader of the idx files Fashion-MNIST ships in (gzip-compressed or plain)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from infer_data.errors import DatasetNotFoundError, FormatError

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """An idx file of unsigned bytes as a uint8 array of the declared shape.

    Raises:
        FormatError: not an idx file of unsigned bytes, or a size that disagrees with its header.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0:2] != b"\0\0" or data[2] != 0x08:
        raise FormatError(f"{path}: not an idx file of unsigned bytes; use the official Fashion-MNIST files")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != int(np.prod(dims)):
        raise FormatError(f"{path}: header declares shape {dims} but holds {payload.size} bytes; the file is truncated")
    return payload.reshape(dims).copy()


def find_idx(root: str | os.PathLike[str], stem: str) -> Path | None:
    """``root/stem`` or ``root/stem.gz``, also under torchvision's ``FashionMNIST/raw``."""
    for folder in (Path(root), Path(root) / "FashionMNIST" / "raw"):
        for name in (stem, f"{stem}.gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def read_fashion_mnist(root: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 28, 28) and labels uint8 (N,) of one split.

    Raises:
        DatasetNotFoundError: the idx files are not in ``root``.
    """
    paths = [find_idx(root, stem) for stem in _FILES[split]]
    if paths[0] is None or paths[1] is None:
        raise DatasetNotFoundError(
            f"fashion-mnist: no {_FILES[split][0]}[.gz] in {root}; install it with "
            "`apt-get install -y dataset-fashion-mnist` or pass --data-root"
        )
    return read_idx(paths[0]), read_idx(paths[1])
