"""Build the embedded default dataset: a class-balanced Fashion-MNIST subset.

Reads the four official idx files (``apt-get install -y dataset-fashion-mnist`` puts them in
/usr/share/datasets/fashion-mnist/), draws ``--train-per-class`` training and
``--test-per-class`` test images of every class with a fixed seed, and writes
``infer_distill/embedded/fashion_mnist_subset.npz``: a zip of ``.npy`` members (no pickle) with
fixed timestamps, so the same inputs always give the same bytes.

Run from the project root::

    .venv/bin/python scripts/build_embedded.py
"""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infer_distill.idx import FASHION_MNIST_CLASSES, read_fashion_mnist

OUT = ROOT / "infer_distill" / "embedded" / "fashion_mnist_subset.npz"


def pick(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of ``per_class`` images of every class, drawn without replacement."""
    rng = np.random.default_rng(seed)
    chosen = [np.sort(rng.choice(np.flatnonzero(labels == c), per_class, replace=False)) for c in range(int(labels.max()) + 1)]
    return np.sort(np.concatenate(chosen))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A deterministic .npz: members sorted, fixed timestamps, deflate-compressed."""
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    tmp.replace(path)


@click.command()
@click.option("--source", default="/usr/share/datasets/fashion-mnist", show_default=True, help="Folder with the four idx .gz files.")
@click.option("--train-per-class", default=500, show_default=True)
@click.option("--test-per-class", default=100, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--out", default=str(OUT), show_default=True)
def main(source: str, train_per_class: int, test_per_class: int, seed: int, out: str) -> None:
    """Write the embedded Fashion-MNIST subset and print its sha256."""
    arrays: dict[str, np.ndarray] = {}
    for split, per_class, split_seed in (("train", train_per_class, seed), ("test", test_per_class, seed + 1)):
        images, labels = read_fashion_mnist(source, split)  # (N, 28, 28) uint8, (N,) uint8
        idx = pick(labels, per_class, split_seed)
        arrays[f"{split}_images"] = images[idx][:, None]  # (n, 1, 28, 28)
        arrays[f"{split}_labels"] = labels[idx].astype(np.int64)
        arrays[f"{split}_source_indices"] = idx.astype(np.int64)
    arrays["classes"] = np.array(FASHION_MNIST_CLASSES)
    path = Path(out)
    write_npz(path, arrays)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    click.echo(f"wrote {path} ({path.stat().st_size} bytes, sha256 {digest})")


if __name__ == "__main__":
    main()
