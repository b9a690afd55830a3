"""The embedded default dataset: a class-balanced Fashion-MNIST subset (see README.md here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infer_data.errors import DatasetNotFoundError

EMBEDDED_FILE = Path(__file__).with_name("fashion_mnist_subset.npz")


def load_embedded(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """One split of the embedded subset.

    Args:
        split: "train" (5000 images) or "test" (1000 images).

    Returns:
        ``(images uint8 (N, 1, 28, 28), labels int64 (N,), source_indices int64 (N,), classes)``;
        ``source_indices`` index the official Fashion-MNIST split.

    Raises:
        DatasetNotFoundError: the package data file is missing (a broken install).
    """
    if not EMBEDDED_FILE.is_file():
        raise DatasetNotFoundError(f"{EMBEDDED_FILE} is missing; reinstall infer-data or rebuild it with scripts/build_embedded.py")
    with np.load(EMBEDDED_FILE, allow_pickle=False) as z:
        return (z[f"{split}_images"], z[f"{split}_labels"], z[f"{split}_source_indices"], [str(c) for c in z["classes"]])
