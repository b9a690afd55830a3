"""webdataset interoperability: a zstd handler for ``.decode`` chains and a group pipeline.

The shards are plain tars, so ``webdataset.WebDataset(urls)`` iterates them as they are: one
sample per group, key ``g000003``, fields such as ``base.npy.zst``, ``comp.npy.zst``,
``label.npy.zst`` and ``meta.json``. Add :func:`zstd_handler` in front of webdataset's own
handlers to get numpy arrays::

    import webdataset as wds
    from infer_data.wds import zstd_handler
    ds = wds.WebDataset(urls, shardshuffle=False).decode(zstd_handler)

:func:`group_pipeline` does the same through the project's safe decoder and yields
:class:`~infer_data.record.GroupRecord` objects with shapes checked against the index.
:func:`infer_data.streamstages.expand_groups` is a stage that turns such a pipeline's groups into
training instances (``wds.WebDataset(urls, shardshuffle=False).compose(expand_groups(index))``),
and :class:`infer_data.stream.InferStreamDataset` streams whole sets from URLs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from .codecs import decompress_bounded
from .constants import GROUP_KEY
from .index import read_index
from .reader import GroupSchema, check_shard_file, shard_path
from .record import GroupRecord
from .streamstages import decode_sample

DEFAULT_MAX_DECOMPRESSED = 1 << 30  # 1 GiB per member when no index bounds it


def zstd_handler(key: str, data: bytes, *, max_bytes: int = DEFAULT_MAX_DECOMPRESSED) -> Any:
    """webdataset handler: decompress ``*.zst`` fields (bounded) and continue decoding.

    Returns ``None`` for other keys, as webdataset expects.
    """
    import webdataset as wds

    if not key.endswith(".zst"):
        return None
    return wds.autodecode.Continue(key[:-4], decompress_bounded(data, max_bytes, key))


def shard_urls(root: str | os.PathLike[str]) -> list[str]:
    """Local paths of every shard listed in ``root/index.json``, in order."""
    index = read_index(root)
    return [str(shard_path(root, s)) for s in index.shards]


def group_pipeline(root: str | os.PathLike[str], *, verify: bool = True) -> Iterator[GroupRecord]:
    """Iterate the groups with ``webdataset.WebDataset`` and the project's safe decoder.

    Each shard's size (and sha256 when ``verify``) is checked before webdataset opens it.

    Raises:
        InferError: any problem, naming the shard and member.
    """
    import webdataset as wds

    index = read_index(root)
    schema = GroupSchema(index)
    for entry in index.shards:
        check_shard_file(shard_path(root, entry), entry, verify=verify)
    pipeline = wds.WebDataset(shard_urls(root), shardshuffle=False, empty_check=False)
    for sample in pipeline:
        yield decode_sample(sample, schema)[1]


def group_key(g: int) -> str:
    """The sample key of group ``g`` (``__key__`` in webdataset)."""
    return GROUP_KEY.format(g)


__all__ = ["group_key", "group_pipeline", "shard_urls", "zstd_handler"]
