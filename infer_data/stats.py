"""Exact storage accounting and compression ratios of a distilled dataset.

Stored bytes are counted from the tar headers (members by field, plus tar framing) and the
index file, so they add up to the bytes on disk exactly. The comparison point is the reference
code's way of storing the same data: every instance a JPEG (quality 75) file plus one fp32
label vector per instance. Ratios are given against the original training set where it is a
known one (DESIGN section 3 denominators).
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .constants import INDEX_FILENAME
from .dataset import InferDataset
from .export import encode_image, to_uint8
from .index import DatasetIndex, read_index
from .reader import check_shard_file, shard_path

# name -> (train images, train bytes as the original distribution stores them)
KNOWN_DATASETS: dict[str, tuple[int, int]] = {
    "cifar10": (50_000, 153_600_000),  # raw uint8 32x32x3
    "cifar100": (50_000, 153_600_000),
    "tinyimagenet": (100_000, 1_228_800_000),  # raw uint8 64x64x3
    "imagenet1k": (1_281_167, 147_897_477_120),  # official train tar
    "fashion-mnist": (60_000, 47_040_000),  # raw uint8 28x28
}
FIELD_OF_PREFIX = (("base", "base"), ("comp", "compensators"), ("label", "labels"), ("crop", "labels"), ("meta", "metadata"))


@dataclass
class StoredBytes:
    """Bytes on disk split by what they hold; ``total`` is the sum of shard and index sizes."""

    base: int = 0
    compensators: int = 0
    labels: int = 0
    metadata: int = 0  # meta.json members plus index.json
    container: int = 0  # tar headers, padding and end-of-archive blocks
    total: int = 0


@dataclass
class Materialized:
    """The reference layout: one JPEG q75 file per instance plus one fp32 label per instance."""

    instances: int
    image_bytes: int
    label_bytes: int
    total: int
    exact: bool  # False when image bytes were extrapolated from a sample
    sampled: int


@dataclass
class Stats:
    """Everything ``infer stats`` reports."""

    dataset: str
    groups: int
    instances: int
    k: int
    m: int
    num_classes: int
    stored_images: int
    ipc: int
    stored: StoredBytes
    materialized: Materialized
    original: dict[str, Any] | None
    ratios: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def stored_bytes(root: str | os.PathLike[str], *, verify: bool = False) -> StoredBytes:
    """Count every byte of the shards and the index by field.

    Raises:
        InferError: a missing, truncated or (with ``verify``) corrupt shard.
    """
    index = read_index(root)
    out = StoredBytes()
    for entry in index.shards:
        path = shard_path(root, entry)
        check_shard_file(path, entry, verify=verify)
        payload = 0
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                suffix = info.name.partition(".")[2]
                name = next((f for p, f in FIELD_OF_PREFIX if suffix.startswith(p)), "metadata")
                setattr(out, name, getattr(out, name) + info.size)
                payload += info.size
        out.container += entry.bytes - payload
        out.total += entry.bytes
    index_bytes = (Path(root) / INDEX_FILENAME).stat().st_size
    out.metadata += index_bytes
    out.total += index_bytes
    return out


def materialized_bytes(ds: InferDataset, *, max_exact: int = 20_000, sample: int = 2_000, quality: int = 75) -> Materialized:
    """Bytes of the reference layout, encoding instances as JPEG q75 in memory.

    Every instance is encoded when there are at most ``max_exact``; otherwise an evenly spaced
    sample of ``sample`` instances is encoded and the total extrapolated (``exact=False``).
    """
    n = len(ds)
    idx = torch.arange(n) if n <= max_exact else torch.linspace(0, n - 1, sample).round().long()
    total = 0
    step = max(1, (1 << 22) // int(torch.tensor(ds.index.dataset.image_shape).prod()))  # ~16 MB of float32 images per batch
    for start in range(0, len(idx), step):
        x, _ = ds.compose_batch(idx[start : start + step])
        total += sum(len(encode_image(to_uint8(img), "jpeg", quality)) for img in x)
    image_bytes = total if n <= max_exact else round(total * n / len(idx))
    label_bytes = n * ds.index.dataset.num_classes * 4
    return Materialized(n, image_bytes, label_bytes, image_bytes + label_bytes, n <= max_exact, len(idx))


def original_size(ds: InferDataset) -> dict[str, Any] | None:
    """Train images and bytes of the source dataset, when known (or recorded by the producer)."""
    return original_of(ds.index)


def original_of(index: DatasetIndex) -> dict[str, Any] | None:
    """``{"name", "images", "bytes"}`` of the source training set: a known dataset's, else the
    producer's ``provenance.source_size``; None when neither is there."""
    name = index.dataset.name
    if name in KNOWN_DATASETS:
        images, nbytes = KNOWN_DATASETS[name]
        return {"name": name, "images": images, "bytes": nbytes}
    recorded = index.provenance.get("source_size")
    if isinstance(recorded, dict) and {"images", "bytes"} <= set(recorded):
        return {"name": name, "images": int(recorded["images"]), "bytes": int(recorded["bytes"])}
    return None


PAPER_CONVENTION = ("ipc*K budget images / train images + ipc*K fp32 labels / train bytes; "
                    "the (M+1)x instances' labels and compensator bytes are not charged")


def paper_ratios(ipc: int, k: int, num_classes: int, train_images: int, train_bytes: int) -> dict[str, Any]:
    """The INFER paper's compression ratio: ``ipc * K`` budget images over the train images, plus
    one fp32 label of ``num_classes`` values per budget image over the train bytes (fractions, not %)."""
    budget = ipc * k
    images, labels = budget / train_images, budget * num_classes * 4 / train_bytes
    return {"images": images, "labels": labels, "total": images + labels, "convention": PAPER_CONVENTION}


def storage_ratios(stored_total: int, stored_images: int, original: dict[str, Any]) -> dict[str, float]:
    """Stored bytes over the original train bytes and stored images over its train images (fractions)."""
    return {"stored_bytes_over_original": stored_total / original["bytes"],
            "stored_images_over_original": stored_images / original["images"]}


def compute_stats(root: str | os.PathLike[str], *, verify: bool = True, max_exact: int = 20_000) -> Stats:
    """Exact stored bytes, the reference layout's bytes and the ratios between them.

    Raises:
        InferError: the dataset fails to load.
    """
    ds = InferDataset(root, target="class", verify=verify)
    ix = ds.index
    stored = stored_bytes(root)
    mat = materialized_bytes(ds, max_exact=max_exact)
    orig = original_size(ds)
    stored_images = ix.num_groups * (ix.method.k + ix.method.m)
    ratios = {"reference_layout_over_stored": mat.total / stored.total}
    if orig:
        ratios |= storage_ratios(stored.total, stored_images, orig) | {"reference_bytes_over_original": mat.total / orig["bytes"]}
    return Stats(ix.dataset.name, ix.num_groups, len(ds), ix.method.k, ix.method.m, ix.dataset.num_classes,
                 stored_images, ix.method.ipc, stored, mat, orig, ratios)
