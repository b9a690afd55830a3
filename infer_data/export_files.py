"""``infer export --layout files``: a set packed by ``infer import`` back to its input layout.

Writes ``OUT/{class folder}/{instance:07d}.{jpg|png}`` holding the stored files byte for byte (the
``passthrough`` base codec), ``classes.json``, ``files.txt`` and ``targets.txt`` as the other
layouts do, ``labels.npy`` (float32 N x NC) for per-image labels, and for per-crop labels
``crops/{class folder}/{instance:07d}.npy`` (float32 R x (5 + NC): box, flip, logits), the
files ``infer import --crops OUT/crops`` reads. No image is decoded or re-encoded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .index import DatasetIndex
from .reader import GroupSchema, iter_raw_groups

Group = tuple[list[bytes], np.ndarray | None, np.ndarray | None]  # files, labels (K, NC), crops (K, R, 5 + NC)


def check_files_layout(index: DatasetIndex) -> None:
    """Refuse sets the ``files`` layout cannot write.

    Raises:
        ConfigError: a base codec other than ``passthrough`` or M > 0.
    """
    if index.codecs["base"]["name"] != "passthrough" or index.method.m:
        raise ConfigError(f"--layout files writes the stored image files of a set made by `infer import` (base codec passthrough, "
                          f"M = 0); this set has base codec {index.codecs['base']['name']!r} and M = {index.method.m}: "
                          "use --layout imagefolder")


def raw_groups(root: str | Path, index: DatasetIndex, *, verify: bool = True) -> Iterator[Group]:
    """Each group's stored files, labels and crops (None when the set has none), in group order."""
    schema = GroupSchema(index)
    base, labels = schema.codecs["base"], schema.codecs["labels"]
    for where, members in iter_raw_groups(root, schema, verify=verify):
        files = base.files(members, schema.shapes.base, where)  # type: ignore[attr-defined]
        if hasattr(labels, "decode_crops"):
            boxes, logits = labels.decode_crops(members, schema.shapes.labels, where)
            yield files, None, np.concatenate([boxes, logits.astype(np.float32)], axis=2)
        else:
            y = labels.decode(members, schema.shapes.labels, where) if schema.has_labels else None
            yield files, None if y is None else y.astype(np.float32), None


def write_files_tree(root: str | Path, index: DatasetIndex, tmp: Path, folders: list[str], targets: list[int],
                     verify: bool, progress: Callable[[int], None] | None) -> tuple[int, int]:
    """Write the ``files`` layout under ``tmp``; returns (image bytes, label bytes)."""
    ext = {"jpeg": "jpg", "png": "png"}[index.codecs["base"]["format"]]
    paths = [f"{folders[c]}/{i:07d}" for i, c in enumerate(targets)]
    for d in folders:
        (tmp / d).mkdir()
    (tmp / "classes.json").write_text(json.dumps(dict(zip(folders, index.dataset.classes)), ensure_ascii=True, indent=1) + "\n")
    image_bytes, label_bytes, labels, i = 0, 0, [], 0
    for files, y, crops in raw_groups(root, index, verify=verify):
        for j, data in enumerate(files):
            (tmp / f"{paths[i + j]}.{ext}").write_bytes(data)
            image_bytes += len(data)
            if crops is not None:
                (tmp / "crops" / folders[targets[i + j]]).mkdir(parents=True, exist_ok=True)
                np.save(tmp / "crops" / f"{paths[i + j]}.npy", crops[j])
                label_bytes += (tmp / "crops" / f"{paths[i + j]}.npy").stat().st_size
        if y is not None:
            labels.append(y)
        i += len(files)
        if progress is not None:
            progress(len(files))
    (tmp / "files.txt").write_text("".join(f"{p}.{ext}\n" for p in paths))
    (tmp / "targets.txt").write_text("".join(f"{c}\n" for c in targets))
    if labels:
        np.save(tmp / "labels.npy", np.concatenate(labels))
        label_bytes += (tmp / "labels.npy").stat().st_size
    return image_bytes, label_bytes
