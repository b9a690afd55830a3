"""Dataset cards: the ``README.md`` a distilled dataset folder carries, generated from its index.

The card is built from ``index.json`` and the shards' tar headers alone (no image is decoded, no
producer code is imported), so ``infer card ROOT`` can regenerate it for any set, and the same
set always gives the same bytes: nothing in it comes from the clock or the machine. Bytes and
ratios are those of :mod:`infer_data.stats` (exact stored bytes by field, the paper's convention,
stored bytes over the original train set); the card itself is not counted in them.

Optional card metadata lives in ``index.json`` under ``provenance.card`` (format section 4):
``{"name": ..., "license": ...}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_write
from .index import DatasetIndex, read_index
from .stats import StoredBytes, original_of, paper_ratios, storage_ratios, stored_bytes

CARD_FILENAME = "README.md"
NO_LICENSE = "not stated (ask the publisher; producers set it with `infer distill --license` or `infer import --license`)"


def card_provenance(name: str = "", license: str = "") -> dict[str, Any]:
    """``{"card": {...}}`` for a producer's provenance, holding the fields that are set (``{}`` if none)."""
    meta = {k: v for k, v in (("name", name), ("license", license)) if v}
    return {"card": meta} if meta else {}


def card_meta(index: DatasetIndex) -> dict[str, str]:
    """``{"name", "license"}`` from ``provenance.card``, with defaults when absent or mistyped."""
    meta = index.provenance.get("card")
    meta = meta if isinstance(meta, dict) else {}
    default = f"{index.dataset.name}-ipc{index.method.ipc}"
    name, lic = meta.get("name"), meta.get("license")
    return {"name": name if isinstance(name, str) and name else default,
            "license": lic if isinstance(lic, str) and lic else NO_LICENSE}


def card_text(root: str | os.PathLike[str]) -> str:
    """The Markdown card of the dataset at ``root``.

    Raises:
        InferError: a missing or malformed index, or a missing or truncated shard.
    """
    index = read_index(root)
    stored = stored_bytes(root)
    parts = [_summary(index), _codecs(index), _bytes(stored), _ratios(index, stored), _teachers(index), _loading(index)]
    return "\n\n".join(parts) + "\n"


def write_card(root: str | os.PathLike[str]) -> Path:
    """Write ``root/README.md`` atomically (replacing an older card); returns its path."""
    path = Path(root) / CARD_FILENAME
    atomic_write(path, card_text(root).encode("utf-8"))
    return path


def _table(rows: list[tuple[str, Any]], head: tuple[str, str] = ("field", "value")) -> str:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    return "\n".join(lines + [f"| {k} | {_cell(v)} |" for k, v in rows])


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _summary(index: DatasetIndex) -> str:
    d, m, meta = index.dataset, index.method, card_meta(index)
    c, h, w = d.image_shape
    rows = [("name", meta["name"]), ("license", meta["license"]), ("source dataset", d.name),
            ("source", d.source or "not recorded"), ("classes (NC)", d.num_classes), ("image shape (C x H x W)", f"{c} x {h} x {w}"),
            ("K (images per group)", m.k), ("M (compensators per group)", m.m), ("G (groups)", m.g), ("ipc", m.ipc),
            ("stored images", index.num_groups * (m.k + m.m)), ("training instances", index.num_instances),
            ("seed", m.seed), ("producer", m.producer or "not recorded"),
            ("format", f"infer {index.version}.{index.minor}"), ("shards", len(index.shards))]
    title = f"# {meta['name']}\n\nA distilled image dataset in the `infer` shard format (docs/format.md of the infer-data package)."
    return f"{title}\n\n{_table(rows)}"


def _codecs(index: DatasetIndex) -> str:
    rows = [(f, json.dumps(index.codecs[f], sort_keys=True)) for f in sorted(index.codecs)]
    return "## Codecs\n\n" + _table(rows, ("field", "codec"))


def _bytes(stored: StoredBytes) -> str:
    names = ("base", "compensators", "labels", "metadata", "container", "total")
    rows = [(n, f"{getattr(stored, n):,}") for n in names]
    note = "Exact bytes on disk by field (metadata: meta.json members and index.json; container: tar headers and padding); this card is not counted."
    return f"## Bytes\n\n{note}\n\n" + _table(rows, ("field", "bytes"))


def _ratios(index: DatasetIndex, stored: StoredBytes) -> str:
    orig = original_of(index)
    if orig is None:
        return "## Ratios\n\nThe original training set's size is not known (no known dataset name, no provenance.source_size): no ratio."
    m, nc = index.method, index.dataset.num_classes
    paper = paper_ratios(m.ipc, nc, nc, orig["images"], orig["bytes"])  # the budget is ipc images per class
    own = storage_ratios(stored.total, index.num_groups * (m.k + m.m), orig)
    rows = [("original train set", f"{orig['name']}: {orig['images']:,} images, {orig['bytes']:,} bytes"),
            ("stored bytes / original bytes", _pct(own["stored_bytes_over_original"])),
            ("stored images / original images", _pct(own["stored_images_over_original"])),
            ("paper convention", f"{_pct(paper['total'])} ({_pct(paper['images'])} images + {_pct(paper['labels'])} labels)")]
    return f"## Ratios\n\nPaper convention: {paper['convention']}.\n\n" + _table(rows, ("ratio", "value"))


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.4f}%"


def _teachers(index: DatasetIndex) -> str:
    recorded = index.provenance.get("teachers")
    recorded = [t for t in recorded if isinstance(t, dict)] if isinstance(recorded, list) else []
    if not recorded:
        names = ", ".join(index.method.teachers) or "none"
        return f"## Teachers\n\nCompensator teachers: {names}. No checksums recorded."
    rows = [(t.get("arch", "?"), f"{t.get('role', '')} sha256 {t.get('sha256', 'not recorded')}") for t in recorded]
    return "## Teachers\n\n" + _table(rows, ("architecture", "role and weights checksum"))


def _loading(index: DatasetIndex) -> str:
    first = index.shards[0].name if index.shards else "shard-000000.tar"
    prefix = first.rsplit("-", 1)[0]
    return f"""## Loading

With this package (`pip install infer-data`), one training instance per item:

```python
from infer_data import InferDataset
ds = InferDataset("path/to/this/folder")   # {index.num_instances} instances
image, soft_label = ds[0]                  # float C x H x W, float logits over {index.dataset.num_classes} classes
```

With plain webdataset, one sample per group (format section 8):

```python
import webdataset as wds
from infer_data.wds import shard_urls, zstd_handler
groups = wds.WebDataset(shard_urls("path/to/this/folder"), shardshuffle=False).decode(zstd_handler, "rgb8")
```

With Hugging Face datasets (one row per group; members as bytes, decode them with infer_data.codecs):

```python
from datasets import load_dataset
rows = load_dataset("webdataset", data_files={{"train": "path/to/this/folder/{prefix}-*.tar"}}, split="train")
```

Check the shards against their checksums with `infer verify path/to/this/folder`."""
