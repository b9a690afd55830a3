"""InferDataset: a map-style ``torch.utils.data.Dataset`` over a distilled shard folder.

The stored factors are loaded once (uint8 bases, compensators, labels); instances
``clamp(x_i / 255 + u_j, 0, 1)`` are composed on access, so no float copy of the expanded set
ever exists. Lossy (JPEG) bases are decoded per group on demand behind a bounded cache.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .codecs import Members
from .compose import compose, normalize
from .constants import GROUP_KEY
from .errors import ConfigError
from .index import DatasetIndex, read_index
from .indexing import expand
from .remote import resolve_root
from .reader import GroupSchema, check_shard_file, decode_group, group_members, shard_path

TARGETS = ("soft", "class")
LAZY_BASE_CODECS = ("jpeg",)


def verify_choice(value: str, name: str, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        ConfigError: naming the argument and the valid values.
    """
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of {', '.join(map(repr, choices))}")
    return value


class InferDataset(Dataset[tuple[torch.Tensor, Any]]):
    """The instances of a distilled dataset.

    ``len(ds)`` is K * (M + 1) * G; ``ds[i]`` is ``(image, target)`` with image float32
    (C, H, W) = clamp(base / 255 + u, 0, 1) (normalized with the stored mean/std when
    ``normalize``, then ``transform``) and target the static soft-label logits, float32 (NC,),
    or the hard class id (int) when ``target="class"``. Instance order is defined in
    :mod:`infer_data.indexing`.

    Args:
        root: folder holding ``index.json`` and the shards, or a URL prefix (``https://``,
            ``http://``, ``file://``) under which they are published; a URL is mirrored into
            ``cache_dir`` once (see :mod:`infer_data.remote`).
        target: ``"soft"`` (stored logits) or ``"class"`` (hard class id).
        transform: callable on the (C, H, W) float image.
        batch_transform: callable on a whole (B, C, H, W) float batch in [0, 1], applied in
            ``__getitems__`` (and to single items as a batch of one) before normalization and
            ``transform``; e.g. :class:`infer_data.transforms.RandomCropFlip` for vectorized
            augmentation (its zero padding is black, as torchvision's RandomCrop before
            ToTensor/Normalize).
        target_transform: callable on the target.
        normalize: subtract the stored mean and divide by the stored std.
        verify: check each shard's sha256 as it is loaded (on by default; size is always checked).
        cache_groups: decoded groups kept for lazily decoded (JPEG) bases.
        cache_dir: where URL datasets are mirrored (default ``$INFER_CACHE`` or ``~/.cache/infer``).

    Raises:
        DatasetNotFoundError: no index at ``root`` or a shard missing.
        IntegrityError: a shard's size or sha256 differs from the index.
        FormatError, CodecError: malformed shards, naming the file and member.
        ConfigError: an invalid argument.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        target: str = "soft",
        transform: Callable[[torch.Tensor], Any] | None = None,
        batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        normalize: bool = False,
        verify: bool = True,
        cache_groups: int = 8,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.source = str(root)
        self.root = resolve_root(root, cache_dir)
        self.index: DatasetIndex = read_index(self.root)
        self.target = verify_choice(target, "target", TARGETS)
        self.transform, self.target_transform = transform, target_transform
        self.batch_transform = batch_transform
        self.normalize = normalize
        self._schema = GroupSchema(self.index)
        if self.target == "soft" and not self._schema.has_labels:
            raise ConfigError(f"{self.root}: stores no soft labels (labels codec 'none'); use target='class'")
        self.k, self.m = self.index.method.k, self.index.method.m
        self.lazy_bases = self.index.codecs["base"]["name"] in LAZY_BASE_CODECS
        self._cache_size = max(1, cache_groups)
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._load(verify)
        self.mean = torch.tensor(self.index.dataset.mean, dtype=torch.float32)
        self.std = torch.tensor(self.index.dataset.std, dtype=torch.float32)

    def _load(self, verify: bool) -> None:
        g_total, (c, h, w) = self.index.num_groups, self.index.dataset.image_shape
        self.bases: torch.Tensor | None = None if self.lazy_bases else torch.empty((g_total, self.k, c, h, w), dtype=torch.uint8)
        self._encoded: list[Members] = []
        comps, labels, ids, src = [], [], [], []
        for entry in self.index.shards:
            path = shard_path(self.root, entry)
            check_shard_file(path, entry, verify=verify)
            for g, members in group_members(path, entry, self._schema):
                where = f"{path} group {GROUP_KEY.format(g)}"
                rec = decode_group(members, self._schema, where, bases=not self.lazy_bases)
                if self.bases is not None:
                    self.bases[g] = torch.from_numpy(rec.bases)
                else:
                    self._encoded.append({s: b for s, b in members.items() if s.startswith("base")})
                comps.append(torch.from_numpy(rec.compensators.astype(np.float32)))
                if rec.labels is not None:
                    labels.append(torch.from_numpy(rec.labels))
                ids.append(torch.from_numpy(rec.class_ids))
                src.append(torch.from_numpy(rec.source_indices))
        self.compensators = torch.stack(comps)  # (G, M, C, H, W) float32
        self.labels: torch.Tensor | None = torch.stack(labels) if labels else None  # (G, K*(M+1), NC)
        self.class_ids = torch.stack(ids)  # (G, K) int64
        self.source_indices = torch.stack(src)  # (G, K) int64

    # -- the torchvision dataset contract --------------------------------------------------

    @property
    def classes(self) -> list[str]:
        """Class names, index = class id."""
        return list(self.index.dataset.classes)

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name -> id."""
        return {c: i for i, c in enumerate(self.classes)}

    @property
    def targets(self) -> list[int]:
        """Hard class id of every instance, in instance order (for samplers)."""
        per_group = self.class_ids.repeat(1, self.m + 1)  # (G, K*(M+1)), row j*K+k -> class of slot k
        return per_group.reshape(-1).tolist()

    def __len__(self) -> int:
        return self.index.num_instances

    def _check(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} instances")
        return i % n

    def group_bases(self, g: int) -> torch.Tensor:
        """uint8 (K, C, H, W) base images of group ``g`` (decoded on demand when lossy)."""
        if self.bases is not None:
            return self.bases[g]
        if g in self._cache:
            self._cache.move_to_end(g)
            return self._cache[g]
        where = f"{self.root} group {GROUP_KEY.format(g)}"
        arr = self._schema.codecs["base"].decode(self._encoded[g], self._schema.shapes.base, where)
        t = torch.from_numpy(arr)
        self._cache[g] = t
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return t

    def base_tensor(self) -> torch.Tensor:
        """All base images, uint8 (G, K, C, H, W); decodes every group when lossy."""
        if self.bases is not None:
            return self.bases
        return torch.stack([self.group_bases(g) for g in range(self.index.num_groups)])

    def compose_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and targets of a batch of flat indices, without the transforms.

        Returns:
            float32 (B, C, H, W) images (normalized if asked) and the targets: float32
            (B, NC) logits for ``target="soft"``, int64 (B,) class ids for ``"class"``.
        """
        x, t = self._compose_raw(indices)
        return (normalize(x, self.mean, self.std) if self.normalize else x), t

    def _compose_raw(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Un-normalized [0, 1] images (B, C, H, W) and targets of flat indices."""
        group, view, slot = expand(indices, self.k, self.m)
        if self.bases is not None:
            x = compose(self.bases, self.compensators, group, view, slot)
        else:
            uniq = group.unique().tolist()
            stack = torch.stack([self.group_bases(g) for g in uniq])  # (U, K, C, H, W)
            remap = torch.zeros(int(group.max()) + 1, dtype=torch.int64)
            remap[torch.tensor(uniq)] = torch.arange(len(uniq))
            x = compose(stack, self.compensators[torch.tensor(uniq)], remap[group], view, slot)
        if self.target == "soft":
            t = self.labels[group, view * self.k + slot].to(torch.float32)  # type: ignore[index]
        else:
            t = self.class_ids[group, slot]
        return x, t

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, Any]]:
        """Batched access used by ``DataLoader``: one vectorized composite per batch.

        Order per batch: compose in [0, 1], ``batch_transform``, normalize, then per sample
        ``transform`` and ``target_transform``.
        """
        idx = torch.tensor([self._check(int(i)) for i in indices], dtype=torch.int64)
        x, t = self._compose_raw(idx)
        if self.batch_transform is not None:
            x = self.batch_transform(x)
        if self.normalize:
            x = normalize(x, self.mean, self.std)
        return [self._finish(x[b], t[b]) for b in range(len(idx))]

    def _finish(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, Any]:
        target: Any = t if self.target == "soft" else int(t)
        if self.transform is not None:
            x = self.transform(x)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return x, target

    def __repr__(self) -> str:
        ix = self.index
        lines = [
            f"Dataset {type(self).__name__}",
            f"    Number of datapoints: {len(self)}",
            f"    Root location: {self.root}",
            f"    Source: {ix.dataset.name} ({ix.dataset.num_classes} classes, image {tuple(ix.dataset.image_shape)})",
            f"    Groups: G={ix.num_groups}, K={self.k}, M={self.m}, teachers={ix.method.teachers}",
            "    Codecs: " + ", ".join(f"{f}={s['name']}" for f, s in ix.codecs.items()),
            f"    Target: {self.target}, normalize={self.normalize}",
        ]
        if self.batch_transform is not None:
            lines.append(f"    Batch transform: {self.batch_transform!r}")
        if self.transform is not None:
            lines.append(f"    Transform: {self.transform!r}")
        return "\n".join(lines)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()
        return state
