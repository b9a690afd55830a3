"""Pipeline stages between shard bytes and training instances, shared by the streaming reader
and plain webdataset pipelines.

``tar_members`` -> webdataset's ``group_by_keys`` -> ``decode_sample`` (inside ``shard_groups``)
turn one checked shard stream into decoded groups; :class:`Composer` turns ``(group, row)`` into
``(image, target)`` exactly as :class:`infer_data.InferDataset` does (the public stage
:func:`infer_data.wds.expand_groups` uses it in plain webdataset pipelines).
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .compose import compose, normalize
from .constants import GROUP_KEY
from .errors import ConfigError, FormatError, plain, quote
from .index import DatasetIndex
from .reader import BoundedReader, GroupSchema, decode_group, header_budget
from .record import GroupRecord
from .shardstream import CheckedStream

TARGETS = ("soft", "class")
KEY_RE = re.compile(r"g(\d{6,})")


# -- decoding groups ---------------------------------------------------------------------------


def check_member(name: str, size: int, schema: GroupSchema, where: str) -> None:
    """Refuse a member the schema does not list or larger than its declared shape allows.

    ``name`` is the member's suffix (``base.png``, ``meta.json``); ``size`` its stored bytes.

    Raises:
        FormatError: naming ``where``, the member and the bound.
    """
    bound = schema.bounds.get(name)
    if bound is None:
        raise FormatError(f"{where}: unexpected member {quote(name)} for codecs {schema.index.codecs}; the shard does not match index.json")
    if size > bound:
        raise FormatError(f"{where} member {quote(name)}: {size} bytes exceeds the {bound} its declared shape allows")


def decode_sample(sample: dict[str, Any], schema: GroupSchema) -> tuple[int, GroupRecord]:
    """A webdataset sample (``__key__``, ``__url__`` and member bytes) -> ``(group number, record)``.

    Every member is checked against the bound its declared shape allows before decoding.

    Raises:
        FormatError, CodecError: an unknown, oversized or missing member, a bad key, a bad value.
    """
    key = str(sample.get("__key__"))
    where = f"{sample.get('__url__', '?')} group {plain(key)}"
    match = KEY_RE.fullmatch(key)
    if match is None:
        raise FormatError(f"{where}: sample key is not a group key like 'g000003'; the shard was not written by infer-data")
    members = {k: v for k, v in sample.items() if not k.startswith("__")}
    for name, data in members.items():
        check_member(name, len(data), schema, where)
    missing = [s for s in sorted(schema.bounds) if s not in members and (schema.has_labels or not s.startswith("label"))]
    if missing:
        raise FormatError(f"{where}: missing member '{key}.{missing[0]}'; the shard is incomplete, re-download it")
    return int(match.group(1)), decode_group(members, schema, where)


def tar_members(stream: CheckedStream, schema: GroupSchema) -> Iterator[dict[str, Any]]:
    """Stream one shard's members as ``{"fname", "data", "__url__"}``, each bounded before it is read.

    When the archive ends, :meth:`CheckedStream.finish` checks size and sha256, so the shard's
    last group is passed on only after its bytes were verified.

    Raises:
        FormatError: not a tar, a non-file member, an unknown or oversized member.
        StreamError, IntegrityError: from the stream.
    """
    url = stream.url
    bounded = BoundedReader(stream, header_budget(schema), url)  # type: ignore[arg-type]
    try:
        with tarfile.open(fileobj=bounded, mode="r|") as tar:  # type: ignore[call-overload]
            for info in tar:
                key, _, suffix = info.name.partition(".")
                if not info.isfile():
                    raise FormatError(f"{url} member {quote(info.name)}: not a regular file; the shard was not written by infer-data")
                check_member(suffix, info.size, schema, f"{url} group {plain(key)}")
                bounded.renew(info.size)
                fh = tar.extractfile(info)
                data = fh.read() if fh is not None else b""
                if len(data) != info.size:
                    raise FormatError(f"{url} member {quote(info.name)}: truncated member; re-download the shard")
                yield {"fname": info.name, "data": data, "__url__": url}
                bounded.renew()
    except tarfile.TarError as exc:
        raise FormatError(f"{url}: not a readable tar stream ({' '.join(str(exc).split())[:160]}); re-download or re-publish the shard") from None
    stream.finish()


def shard_groups(stream: CheckedStream, schema: GroupSchema) -> Iterator[tuple[int, GroupRecord]]:
    """Decode one streamed shard's groups in order, checking keys and count against its index entry.

    Raises:
        FormatError: keys out of order, a missing member, another group count than declared.
    """
    import webdataset as wds

    entry, url = stream.entry, stream.url
    n = 0
    try:
        for sample in wds.tariterators.group_by_keys(tar_members(stream, schema), lcase=False):
            want = GROUP_KEY.format(entry.first_group + n)
            if n >= entry.groups or sample["__key__"] != want:
                raise FormatError(f"{url}: found group key {quote(sample['__key__'])} where index.json expects "
                                  f"'{want if n < entry.groups else 'end of shard'}'")
            yield decode_sample(sample, schema)
            n += 1
    except ValueError as exc:
        if isinstance(exc, FormatError) or "duplicate file name in tar file" not in str(exc):
            raise
        raise FormatError(f"{url}: a member appears twice in one group; the shard was not written by infer-data") from None
    if n != entry.groups:
        raise FormatError(f"{url}: holds {n} groups but index.json declares {entry.groups}; the shard is truncated or rewritten")


# -- composing instances ------------------------------------------------------------------------


@dataclass
class GroupTensors:
    """One decoded group as tensors: bases uint8 (K, C, H, W), compensators float32 (M, C, H, W),
    labels float32 (K * (M + 1), NC) or None, class ids int64 (K,)."""

    bases: torch.Tensor
    compensators: torch.Tensor
    labels: torch.Tensor | None
    class_ids: torch.Tensor

    @classmethod
    def of(cls, record: GroupRecord) -> GroupTensors:
        """Tensors of a record; labels pass through float16, as the map-style dataset stores them."""
        labels = None if record.labels is None else torch.from_numpy(record.labels).to(torch.float16).to(torch.float32)
        return cls(torch.from_numpy(record.bases), torch.from_numpy(record.compensators).to(torch.float32), labels,
                   torch.from_numpy(record.class_ids).to(torch.int64))


class Composer:
    """Turns ``(group tensors, row)`` into ``(image, target)`` exactly as ``InferDataset`` does.

    Row ``r = j * K + k`` is base slot ``k`` through view ``j`` (see :mod:`infer_data.indexing`).
    Image: float32 (C, H, W) = clamp(base / 255 + u, 0, 1), normalized with the index's mean/std
    when ``normalize``, then ``transform``. Target: float32 (NC,) logits (``"soft"``) or the int
    class id (``"class"``), then ``target_transform``.
    """

    def __init__(self, index: DatasetIndex, *, target: str = "soft", normalize: bool = False,
                 transform: Callable[[torch.Tensor], Any] | None = None,
                 target_transform: Callable[[Any], Any] | None = None) -> None:
        if target not in TARGETS:
            raise ConfigError(f"target={target!r} is not valid; choose one of {', '.join(map(repr, TARGETS))}")
        self.k = index.method.k
        self.target, self.normalize = target, normalize
        self.transform, self.target_transform = transform, target_transform
        self.mean = torch.tensor(index.dataset.mean, dtype=torch.float32)
        self.std = torch.tensor(index.dataset.std, dtype=torch.float32)

    def __call__(self, ref: tuple[GroupTensors, int]) -> tuple[torch.Tensor, Any]:
        grp, row = ref
        view, slot = divmod(row, self.k)
        zero = torch.zeros(1, dtype=torch.int64)
        x = compose(grp.bases.unsqueeze(0), grp.compensators.unsqueeze(0), zero, zero + view, zero + slot)[0]
        if self.normalize:
            x = normalize(x, self.mean, self.std)
        if self.transform is not None:
            x = self.transform(x)
        if self.target == "soft":
            if grp.labels is None:
                raise ConfigError("target='soft' but the dataset stores no soft labels (labels codec 'none'); use target='class'")
            t: Any = grp.labels[row].clone()
        else:
            t = int(grp.class_ids[slot])
        return x, (self.target_transform(t) if self.target_transform is not None else t)
