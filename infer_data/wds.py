"""webdataset interoperability: shard URLs, a zstd handler, a group pipeline and the stage that
expands groups into training instances.

The shards are plain tars, so ``webdataset.WebDataset(urls)`` iterates them as they are: one
sample per group, key ``g000003``, fields such as ``base.png``, ``comp.npy.zst``,
``label.npy.zst`` and ``meta.json``. :func:`expand_groups` is the stage that turns those samples
into ``(image, target)`` instances, exactly those of :class:`infer_data.InferDataset` in the same
order, for every codec::

    import webdataset as wds
    from infer_data.wds import expand_groups, shard_urls

    root = "https://host/cifar10-ipc10"          # or a folder, file:// or pipe:...{}...
    ds = wds.WebDataset(shard_urls(root), shardshuffle=False).compose(expand_groups(root))
    loader = DataLoader(ds, batch_size=64, num_workers=2)   # a WebDataset is an IterableDataset

The stage takes raw samples (decoded here with the safe, bounded decoder), samples decoded by
webdataset (``.decode(zstd_handler, "pil")``), Hugging Face ``datasets`` rows and
:class:`~infer_data.record.GroupRecord` objects (:mod:`infer_data.samples`). Images keep the
index's C channels; top-k labels come back dense (:func:`decode_topk` is the decoder for
pipelines of one's own). :func:`group_pipeline` yields checked records as an IterableDataset.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .codecs import decode_topk, decompress_bounded
from .constants import GROUP_KEY
from .index import DatasetIndex
from .reader import GroupSchema, hash_shard, open_shard, shard_path
from .record import GroupRecord
from .samples import sample_record
from .shardstream import CheckedStream, Location, read_index_at
from .streamstages import Composer, GroupTensors, shard_groups

DEFAULT_MAX_DECOMPRESSED = 1 << 30  # 1 GiB per member when no index bounds it


def zstd_handler(key: str, data: bytes, *, max_bytes: int = DEFAULT_MAX_DECOMPRESSED) -> Any:
    """webdataset handler: decompress ``*.zst`` fields (bounded) and continue decoding.

    Returns ``None`` for other keys, as webdataset expects.
    """
    import webdataset as wds

    if not key.endswith(".zst"):
        return None
    return wds.autodecode.Continue(key[:-4], decompress_bounded(data, max_bytes, key))


def _location_index(root: str | os.PathLike[str]) -> tuple[Location, DatasetIndex]:
    location = Location.of(root)
    return location, read_index_at(location)[0]


def shard_urls(root: str | os.PathLike[str]) -> list[str]:
    """Every shard listed in ``root``'s ``index.json``, in order: paths for a folder, URLs for an
    ``http(s)://`` or ``file://`` prefix, commands for ``pipe:...{}...``.

    Raises:
        DatasetNotFoundError, FormatError, UnsupportedVersionError: the index cannot be read.
    """
    location, index = _location_index(root)
    return [location.url(s.name) for s in index.shards]


class GroupPipeline(IterableDataset[GroupRecord]):
    """The checked groups of a dataset, in order, as a ``torch.utils.data.IterableDataset``.

    With DataLoader workers, worker w of W reads shards w, w + W, ... so every group is yielded
    once (use ``batch_size=None``). A folder's shards are opened once, checked (size, and sha256 when
    ``verify``) on that open file and parsed with webdataset's ``group_by_keys`` stage; a URL's shards are streamed with their size
    and sha256 checked as the bytes pass (:mod:`infer_data.shardstream`).
    """

    def __init__(self, root: str | os.PathLike[str], *, verify: bool = True) -> None:
        super().__init__()
        self.location, self.index = _location_index(root)
        self.verify = verify

    def __iter__(self) -> Iterator[GroupRecord]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        schema = GroupSchema(self.index)
        for entry in self.index.shards[worker::workers]:
            if self.location.is_remote or self.location.prefix.startswith("file://"):
                yield from _streamed_groups(CheckedStream(self.location.url(entry.name), entry), schema)
            else:
                yield from _local_groups(self.location.prefix, entry, schema, self.verify)


def _streamed_groups(stream: CheckedStream, schema: GroupSchema) -> Iterator[GroupRecord]:
    try:
        for _, record in shard_groups(stream, schema):
            yield record
    except Exception:
        stream.close(failed=True)
        raise
    finally:
        stream.close()


def _local_groups(root: str, entry: Any, schema: GroupSchema, verify: bool) -> Iterator[GroupRecord]:
    """A local shard's groups: opened once, its sha256 checked on that open file when ``verify``
    (before any group is passed on), then parsed from the same file by the bounded stages."""
    path = shard_path(root, entry)
    with open_shard(path, entry) as f:
        if verify:
            hash_shard(f, path, entry)
        yield from _streamed_groups(CheckedStream(str(path), entry, f, verify=verify), schema)


def group_pipeline(root: str | os.PathLike[str], *, verify: bool = True) -> GroupPipeline:
    """The checked groups of ``root`` in order (:class:`GroupPipeline`).

    Raises:
        InferError: any problem, naming the shard and member.
    """
    return GroupPipeline(root, verify=verify)


class ExpandGroups:
    """A webdataset stage: groups in, ``(image, target)`` instances out, in instance order.

    Instances are those of :class:`infer_data.InferDataset` (see :class:`~infer_data.streamstages.Composer`):
    image float32 (C, H, W) in [0, 1] (normalized when asked), target float32 (NC,) logits or
    the int class id. Each group may be a raw sample, a decoded sample, a Hugging Face row or a
    ``GroupRecord`` (:func:`infer_data.samples.sample_record`).
    """

    def __init__(self, index: DatasetIndex, **composer_kw: Any) -> None:
        self.index = index
        self.composer = Composer(index, **composer_kw)

    def __call__(self, samples: Iterable[Any]) -> Iterator[tuple[torch.Tensor, Any]]:
        schema = GroupSchema(self.index)
        rows = self.index.method.k * (self.index.method.m + 1)
        for sample in samples:
            grp = GroupTensors.of(sample_record(sample, schema))
            for r in range(rows):
                yield self.composer((grp, r))


def expand_groups(index: DatasetIndex | str | os.PathLike[str], **composer_kw: Any) -> ExpandGroups:
    """:class:`ExpandGroups` for ``index`` (a parsed index, or a folder / URL / pipe: prefix to read
    it from); keywords as :class:`~infer_data.streamstages.Composer` (``target``, ``normalize``,
    ``transform``, ``target_transform``).

    Raises:
        DatasetNotFoundError, FormatError, UnsupportedVersionError: the index cannot be read.
        ConfigError: an invalid keyword value.
    """
    if not isinstance(index, DatasetIndex):
        index = _location_index(index)[1]
    return ExpandGroups(index, **composer_kw)


def group_key(g: int) -> str:
    """The sample key of group ``g`` (``__key__`` in webdataset)."""
    return GROUP_KEY.format(g)


__all__ = ["ExpandGroups", "GroupPipeline", "decode_topk", "expand_groups", "group_key", "group_pipeline",
           "sample_record", "shard_urls", "zstd_handler"]
