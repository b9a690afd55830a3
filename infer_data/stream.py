"""Streaming a distilled dataset from URLs, folders or ``pipe:`` commands with webdataset's stages.

:class:`InferStreamDataset` is a ``torch.utils.data.IterableDataset`` that reads ``index.json``
first and then streams shards, without downloading the whole set::

    ds = InferStreamDataset("https://host/cifar10-ipc10", shuffle=2000, seed=0)
    loader = DataLoader(ds, batch_size=256, num_workers=4)

The pipeline is built from webdataset's own stages (``DataPipeline``, ``ResampledShards``,
``url_opener`` with ``gopen``, ``group_by_keys``, ``shuffle``, ``batched``, ``with_epoch``) and
the project's safe decoder: every tar member is bounded by the size its declared shape allows
before it is read, each group is decoded with :func:`infer_data.reader.decode_group`, and each
shard's size and sha256 are checked as its bytes pass (:mod:`infer_data.shardstream`).

Splitting. With R ranks and W DataLoader workers there are S = R x W *readers*. In every epoch
the shards are put in one order (the index order, or a shuffled order that every rank draws
from the same seed), and reader ``s`` takes the contiguous run of instances
``[s * n, (s + 1) * n)`` of that order, ``n = N // S``. A reader opens only the shards its run
touches: with at least S shards of equal size (S dividing their number) that is a split by
shard; with fewer shards than readers (small sets are one shard) several readers read the same
shard and each keeps only its own instances, so the split falls back to groups and instances.
Every reader yields exactly ``n`` instances, so every rank yields the same number of batches
(no DDP hang); the ``N mod S`` (< S) instances at the end of the epoch's order are left out,
different ones in each epoch when shards are shuffled. With ``resampled=True`` shards are drawn
with replacement (``webdataset.ResampledShards``) and every reader yields
``epoch_instances // S`` instances per epoch.

:func:`infer_data.wds.expand_groups` (re-exported here) is the same expansion as a stage for a plain
``webdataset.WebDataset``.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset

from .errors import ConfigError, DatasetNotFoundError
from .index import DatasetIndex, ShardEntry
from .reader import GroupSchema
from .remote import cache_key
from .shardstream import Location, checked_stream, locate_shard, read_index_at
from .streamstages import Composer, GroupTensors, decode_sample, shard_groups
from .wds import ExpandGroups, expand_groups

__all__ = ["Composer", "ExpandGroups", "InferStreamDataset", "decode_sample", "expand_groups", "reader_plan"]


# -- the split ----------------------------------------------------------------------------------


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from integers, the same on every machine and process."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def reader_plan(index: DatasetIndex, order: list[int], readers: int, reader: int) -> list[tuple[ShardEntry, int, int]]:
    """Shards that reader ``reader`` of ``readers`` opens, with the shard-local instance range it keeps.

    The shards are laid out in ``order``; the reader keeps instances ``[reader * n, (reader + 1) * n)``
    of that layout, ``n = N // readers``.

    Returns:
        ``(entry, lo, hi)`` per shard touched: keep the shard's instances ``lo <= i < hi``.
    """
    n = index.num_instances // readers
    start, stop = reader * n, (reader + 1) * n
    plan, offset = [], 0
    for s in order:
        entry = index.shards[s]
        lo, hi = max(offset, start), min(offset + entry.instances, stop)
        if lo < hi:
            plan.append((entry, lo - offset, hi - offset))
        offset += entry.instances
    return plan


def _open_error(exn: Exception) -> bool:
    """``url_opener`` handler: a shard that cannot be opened is a one-line error naming it."""
    url = exn.args[-1] if exn.args else "?"
    raise DatasetNotFoundError(f"{url}: cannot open shard ({type(exn).__name__}); check the URL, path or command") from exn


class InferStreamDataset(IterableDataset[Any]):
    """The instances of a distilled dataset, streamed shard by shard; see the module docstring.

    Yields ``(image, target)`` like :class:`infer_data.InferDataset` (image float32 (C, H, W),
    target float32 (NC,) logits or int class id), or collated batches when ``batch_size`` is set.

    Args:
        source: local folder, ``file://`` or ``http(s)://`` prefix, or ``pipe:`` command with
            ``{}`` for the file name (:class:`infer_data.shardstream.Location`).
        target, normalize, transform, target_transform: as :class:`infer_data.InferDataset`.
        shuffle: shuffle buffer in instances (0: index order). When > 0 the shard order is
            shuffled per epoch (the same on every rank), each group's instances are permuted, and
            a webdataset shuffle buffer of this size mixes groups.
        seed: base seed of every random choice (combined with the epoch and the reader).
        resampled: draw shards with replacement, endlessly; an epoch is ``epoch_instances`` instances.
        epoch_instances: instances per epoch over all readers with ``resampled`` (default: N).
        batch_size: collate batches of this size inside the pipeline (use ``DataLoader(batch_size=None)``).
        rank, world_size: this process's place among the ranks (default: ``RANK``/``WORLD_SIZE`` or
            ``torch.distributed``, as webdataset reads them).
        cache_dir: keep verified shards of a remote source under ``cache_dir/<key>/`` (the URL
            mirror's layout, so ``infer cache ls`` lists it); a shard that fails is not kept.
        retries: reopen a dropped shard stream this many times, skipping the bytes already read.

    Raises:
        DatasetNotFoundError, FormatError, UnsupportedVersionError: the index cannot be read.
        ConfigError: invalid arguments.
    """

    def __init__(self, source: str | os.PathLike[str], *, target: str = "soft", normalize: bool = False,
                 transform: Callable[[torch.Tensor], Any] | None = None, target_transform: Callable[[Any], Any] | None = None,
                 shuffle: int = 0, seed: int = 0, resampled: bool = False, epoch_instances: int | None = None,
                 batch_size: int | None = None, rank: int | None = None, world_size: int | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, retries: int = 0) -> None:
        super().__init__()
        _check_args(shuffle=shuffle, batch_size=batch_size, retries=retries, epoch_instances=epoch_instances, rank=rank, world_size=world_size)
        self.location = Location.of(source)
        self.index, _ = read_index_at(self.location)
        if not self.index.shards:
            raise DatasetNotFoundError(f"{self.location.url('index.json')}: lists no shards; nothing to stream")
        for entry in self.index.shards:
            self.location.url(entry.name)  # refuses names that are not plain, before any is opened
        self.composer = Composer(self.index, target=target, normalize=normalize, transform=transform, target_transform=target_transform)
        self.shuffle, self.seed, self.resampled, self.epoch_instances = shuffle, seed, resampled, epoch_instances
        self.batch_size, self.rank, self.world_size, self.retries = batch_size, rank, world_size, retries
        self.cache_dir = None
        if cache_dir is not None and self.location.is_remote:
            self.cache_dir = Path(cache_dir) / cache_key(self.location.prefix)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch (shard order, shuffles, resampling draws), as ``DistributedSampler.set_epoch``."""
        self.epoch = int(epoch)

    def readers(self) -> tuple[int, int]:
        """``(this reader, number of readers)``: rank x DataLoader workers, webdataset's worker info."""
        import webdataset as wds

        rank, world, worker, workers = wds.utils.pytorch_worker_info()
        if self.rank is not None and self.world_size is not None:
            rank, world = self.rank, self.world_size
        return rank * workers + worker, world * workers

    def instances_per_reader(self, readers: int) -> int:
        """Instances each of ``readers`` readers yields per epoch."""
        total = self.epoch_instances if self.resampled and self.epoch_instances is not None else self.index.num_instances
        return total // readers

    def epoch_length(self, num_workers: int = 0, batch_size: int | None = None) -> int:
        """Items one rank's ``DataLoader(ds, num_workers=..., batch_size=...)`` yields per epoch
        (batches when a batch size is given here or in the dataset)."""
        workers = max(num_workers, 1)
        n = self.instances_per_reader((self.world_size or _world()) * workers)
        b = batch_size or self.batch_size
        return workers * (math.ceil(n / b) if b else n)

    # -- the pipeline ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        reader, readers = self.readers()
        n = self.instances_per_reader(readers)
        if n == 0:
            raise ConfigError(f"{self.location.prefix}: {self.index.num_instances} instances cannot be split over "
                              f"{readers} readers (ranks x DataLoader workers); use fewer workers")
        return iter(self.pipeline(reader, readers))

    def pipeline(self, reader: int, readers: int) -> Any:
        """The ``webdataset.DataPipeline`` of reader ``reader`` of ``readers`` for the current epoch."""
        import webdataset as wds

        rng = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch, reader))
        n = self.instances_per_reader(readers)
        shards, ranges = self._shard_source(reader, readers)
        stages: list[Any] = [shards, functools.partial(self._locate, ranges=ranges),
                             functools.partial(wds.tariterators.url_opener, handler=_open_error), self._groups,
                             _InstanceRefs(self.index, rng if self.shuffle else None)]
        if self.shuffle:
            stages.append(wds.filters.shuffle(self.shuffle, initial=self.shuffle, rng=random.Random(derived_seed(self.seed, self.epoch, reader, 1))))
        stages.append(wds.filters.map(self.composer))
        if self.batch_size:
            stages.append(wds.filters.batched(self.batch_size, collation_fn=torch.utils.data.default_collate, partial=True))
        pipeline = wds.DataPipeline(*stages)
        if self.resampled:
            pipeline = pipeline.with_epoch(math.ceil(n / self.batch_size) if self.batch_size else n)
        return pipeline

    def _shard_source(self, reader: int, readers: int) -> tuple[Any, dict[str, tuple[int, int]]]:
        """webdataset's shard list of this reader (``{"url": shard name}`` dicts) and, per shard,
        the instance range ``(lo, hi)`` it keeps (absent: the whole shard)."""
        import webdataset as wds

        names = [e.name for e in self.index.shards]
        if self.resampled:
            seed = derived_seed(self.seed, self.epoch)
            return wds.ResampledShards(names, seed=seed, deterministic=True, worker_seed=lambda: reader), {}
        order = list(range(len(names)))
        if self.shuffle:
            order = torch.randperm(len(order), generator=torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))).tolist()
        plan = reader_plan(self.index, order, readers, reader)
        return wds.SimpleShardList([e.name for e, _, _ in plan]), {e.name: (lo, hi) for e, lo, hi in plan}

    def _locate(self, src: Iterable[dict[str, Any]], ranges: dict[str, tuple[int, int]]) -> Iterator[dict[str, Any]]:
        """Shard names -> ``{"entry", "lo", "hi", "url", "cached", "cache_to"}``; ``url`` is the
        shard's verified cache copy when there is one."""
        entries = {e.name: e for e in self.index.shards}
        for d in src:
            entry = entries[d["url"]]
            lo, hi = ranges.get(entry.name, (0, entry.instances))
            yield {"entry": entry, "lo": lo, "hi": hi} | locate_shard(self.location, entry, self.cache_dir)

    def _groups(self, src: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Check and decode each opened shard: ``{"record", "start", "lo", "hi"}`` per group."""
        schema = GroupSchema(self.index)
        for d in src:
            entry: ShardEntry = d["entry"]
            stream = checked_stream(d["url"], entry, d["stream"], cached=d["cached"], cache_to=d["cache_to"], retries=self.retries)
            try:
                for g, record in shard_groups(stream, schema):
                    yield {"record": record, "start": (g - entry.first_group) * _rows(self.index), "lo": d["lo"], "hi": d["hi"]}
            except Exception:
                stream.close(failed=True)
                raise
            finally:
                stream.close()


class _InstanceRefs:
    """Stage: decoded groups -> ``(GroupTensors, row)`` for the rows a reader keeps (permuted with ``rng``)."""

    def __init__(self, index: DatasetIndex, rng: torch.Generator | None) -> None:
        self.rows, self.rng = _rows(index), rng

    def __call__(self, src: Iterable[dict[str, Any]]) -> Iterator[tuple[GroupTensors, int]]:
        for d in src:
            lo, hi = max(d["lo"] - d["start"], 0), min(d["hi"] - d["start"], self.rows)
            if lo >= hi:
                continue
            rows = torch.arange(lo, hi)
            if self.rng is not None:
                rows = rows[torch.randperm(len(rows), generator=self.rng)]
            grp = GroupTensors.of(d["record"])
            for r in rows.tolist():
                yield grp, r


def _rows(index: DatasetIndex) -> int:
    """Instances per group, K * (M + 1)."""
    return index.method.k * (index.method.m + 1)


def _world() -> int:
    import webdataset as wds

    return int(wds.utils.pytorch_worker_info()[1])


def _check_args(*, shuffle: int, batch_size: int | None, retries: int, epoch_instances: int | None,
                rank: int | None, world_size: int | None) -> None:
    """Raises ConfigError naming the first invalid argument."""
    if shuffle < 0:
        raise ConfigError(f"shuffle={shuffle}: must be >= 0 (a buffer size in instances; 0 keeps the index order)")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: must be >= 1 or None")
    if retries < 0:
        raise ConfigError(f"retries={retries}: must be >= 0")
    if epoch_instances is not None and epoch_instances < 1:
        raise ConfigError(f"epoch_instances={epoch_instances}: must be >= 1 or None")
    if (rank is None) != (world_size is None):
        raise ConfigError("rank and world_size: give both or neither")
    if rank is not None and world_size is not None and not 0 <= rank < world_size:
        raise ConfigError(f"rank={rank}, world_size={world_size}: need 0 <= rank < world_size")
