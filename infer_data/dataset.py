"""InferDataset: a map-style ``torch.utils.data.Dataset`` over a distilled shard folder.

Opening reads ``index.json`` and the shard sizes, nothing more, so it takes the same time at
any number of groups. Groups are decoded on first use into a memory-mapped cache shared by every
process on the machine (see :mod:`infer_data.store`); instances ``clamp(x_i / 255 + u_j, 0, 1)``
are composed per batch from the uint8 bases and the compensators, so no float copy of the
expanded set ever exists.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from .compose import compose, normalize
from .errors import ConfigError
from .index import DatasetIndex
from .indexing import expand
from .remote import default_cache_dir, resolve_root
from .store import Factors, GroupStore, open_index

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
    (C, H, W) = clamp(base / 255 + u, 0, 1) (after ``batch_transform``, then ``transform`` on the
    [0, 1] image, then normalized with the stored mean/std when ``normalize``, so colour
    transforms such as ``ColorJitter`` see the image they expect) and target the static soft-label logits,
    float32 (NC,), or the hard class id (int) when ``target="class"``. ``ds[indices]`` with a list
    or int64 tensor of indices returns a whole batch ``(images (B, C, H', W'), targets (B, NC) or
    (B,))`` (see :func:`infer_data.batches.batch_loader`). Instance order is defined in
    :mod:`infer_data.indexing`.

    Args:
        root: folder holding ``index.json`` and the shards, or a URL prefix (``https://``,
            ``http://``, ``file://``) under which they are published; a URL is mirrored into
            ``cache_dir`` once (see :mod:`infer_data.remote`).
        target: ``"soft"`` (stored logits) or ``"class"`` (hard class id).
        transform: callable on the (C, H, W) float image in [0, 1], before normalization; with
            ``normalize`` it must return a (C, H', W') tensor.
        batch_transform: callable on a whole (B, C, H, W) float batch in [0, 1], applied before
            ``transform`` and normalization; e.g. :class:`infer_data.transforms.RandomCropFlip`.
            An object with a ``from_factors(bases, base_idx, comps, comp_idx)`` method builds the
            batch from the uint8 factors itself (e.g. ``RandomResizedCropFlip``: crop before
            converting to float).
        target_transform: callable on the target.
        normalize: subtract the stored mean and divide by the stored std.
        verify: check each shard's sha256 before the first group is decoded from it (on by
            default; shard sizes are always checked at open).
        cache_dir: cache root: URL datasets are mirrored under it and decoded groups are kept in
            its ``decoded/`` folder (default ``$INFER_CACHE`` or ``~/.cache/infer``). The decoded
            cache takes the raw size of the stored factors on disk (``ds.store.nbytes``).

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
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.source = str(root)
        self.root = Path(resolve_root(root, cache_dir))
        index, index_bytes = open_index(self.root)
        self.index: DatasetIndex = index
        self.target = verify_choice(target, "target", TARGETS)
        self.transform, self.target_transform = transform, target_transform
        self.batch_transform = batch_transform
        self.normalize = normalize
        cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.store = GroupStore(self.root, index, index_bytes, cache_root=cache_root, verify=verify)
        if self.target == "soft" and not self.has_labels:
            raise ConfigError(f"{self.root}: stores no soft labels (labels codec 'none'); use target='class'")
        self.k, self.m = index.method.k, index.method.m
        self.mean = torch.tensor(index.dataset.mean, dtype=torch.float32)
        self.std = torch.tensor(index.dataset.std, dtype=torch.float32)
        self._class_ids: torch.Tensor | None = None

    @property
    def has_labels(self) -> bool:
        """Whether the dataset stores soft labels (labels codec other than ``none``)."""
        return self.store.schema.has_labels

    @property
    def num_groups(self) -> int:
        """G."""
        return self.index.num_groups

    def ensure_groups(self, groups: Sequence[int] | torch.Tensor) -> None:
        """Decode the groups ``groups`` into the shared cache if they are not there yet."""
        self.store.ensure(groups.tolist() if isinstance(groups, torch.Tensor) else groups)

    def factors(self, *, decode_all: bool = False) -> Factors:
        """The stored factors as tensors over the decoded cache (see :class:`infer_data.store.Factors`).

        Only groups passed to :meth:`ensure_groups` (or all, with ``decode_all``) hold data.
        """
        if decode_all:
            self.ensure_groups(range(self.num_groups))
        return self.store.factors()

    def group(self, g: int) -> Factors:
        """Group ``g``'s factors, decoded on demand: bases uint8 (K, C, H, W), compensators
        float32 (M, C, H, W), labels float16 (K * (M + 1), NC) or None, class ids and source
        indices int64 (K,)."""
        if not 0 <= g < self.num_groups:
            raise IndexError(f"group {g} out of range for {self.num_groups} groups")
        self.ensure_groups([g])
        f = self.store.factors()
        return Factors(f.bases[g], f.compensators[g], None if f.labels is None else f.labels[g], f.class_ids[g], f.source_indices[g])

    @property
    def class_ids(self) -> torch.Tensor:
        """int64 (G, K): the class of every base image, read from the groups' meta.json only."""
        if self._class_ids is None:
            ids = [torch.from_numpy(self.store.read_meta(g)["class_ids"]) for g in range(self.num_groups)]
            self._class_ids = torch.stack(ids)
        return self._class_ids

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

    def _indices(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """int64 (B,) flat indices in 0..N-1 (negative ones count from the end).

        Raises:
            IndexError: an index outside -N..N-1.
        """
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        n = len(self)
        bad = (idx < -n) | (idx >= n)
        if bool(bad.any()):
            raise IndexError(f"index {int(idx[bad][0])} out of range for {n} instances")
        return idx % n if n else idx

    def compose_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and targets of a batch of flat indices, without the transforms.

        Returns:
            float32 (B, C, H, W) images (normalized if asked) and the targets: float32
            (B, NC) logits for ``target="soft"``, int64 (B,) class ids for ``"class"``.
        """
        x, t = self._compose(self._indices(indices), None)
        return (normalize(x, self.mean, self.std) if self.normalize else x), t

    def _compose(self, idx: torch.Tensor, batch_transform: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """[0, 1] images (B, C, H', W') after ``batch_transform``, and targets, of flat indices."""
        group, view, slot = expand(idx, self.k, self.m)
        self.ensure_groups(group.unique())
        f = self.store.factors()
        if hasattr(batch_transform, "from_factors"):
            comps = f.compensators.flatten(0, 1) if self.m else None
            comp_idx = torch.where(view > 0, group * self.m + view - 1, -1)
            x = batch_transform.from_factors(f.bases.flatten(0, 1), group * self.k + slot, comps, comp_idx)
        else:
            x = compose(f.bases, f.compensators, group, view, slot)
            if batch_transform is not None:
                x = batch_transform(x)
        if self.target == "soft":
            t = f.labels[group, view * self.k + slot].to(torch.float32)  # type: ignore[index]
        else:
            t = f.class_ids[group, slot].clone()
        return x, t

    def get_batch(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch: images (B, C, H', W') and targets (float32 (B, NC) or int64 (B,)).

        Order: compose in [0, 1] (or ``batch_transform.from_factors``), ``batch_transform``,
        ``transform`` per image, normalize, then ``target_transform`` on the batch of targets.
        """
        x, t = self._compose(self._indices(indices), self.batch_transform)
        if self.transform is not None:
            x = torch.stack([self._normalized(self.transform(img)) for img in x])
        elif self.normalize:
            x = normalize(x, self.mean, self.std)
        if self.target_transform is not None:
            t = self.target_transform(t)
        return x, t

    def __getitem__(self, i: int | Sequence[int] | torch.Tensor) -> Any:
        """``ds[i]`` -> ``(image, target)``; ``ds[list or tensor of indices]`` -> a whole batch."""
        if isinstance(i, torch.Tensor) and i.dim() > 0 or isinstance(i, (Sequence, range)) or getattr(i, "ndim", 0) > 0:
            return self.get_batch(i)  # type: ignore[arg-type]
        return self.__getitems__([int(i)])[0]  # type: ignore[arg-type]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, Any]]:
        """Batched access used by ``DataLoader``: one vectorized composite per batch.

        Order per batch: compose in [0, 1], ``batch_transform``, then per sample ``transform``,
        normalize and ``target_transform``.
        """
        x, t = self._compose(self._indices(indices), self.batch_transform)
        if self.transform is None and self.normalize:
            x = normalize(x, self.mean, self.std)
        return [self._finish(x[b], t[b]) for b in range(len(t))]

    def _normalized(self, x: Any) -> Any:
        """``transform``'s output normalized when ``normalize``.

        Raises:
            ConfigError: ``normalize`` is set but the transform did not return a tensor.
        """
        if not self.normalize:
            return x
        if not isinstance(x, torch.Tensor) or x.dim() < 3 or x.shape[-3] != len(self.mean):
            raise ConfigError(f"InferDataset transform returned {type(x).__name__} {tuple(getattr(x, 'shape', ()))}; with "
                              f"normalize=True it must return a float ({len(self.mean)}, H, W) tensor (or pass normalize=False)")
        return normalize(x, self.mean, self.std)

    def _finish(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, Any]:
        target: Any = t if self.target == "soft" else int(t)
        if self.transform is not None:
            x = self._normalized(self.transform(x))
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
            f"    Decoded cache: {self.store.path}",
        ]
        if self.batch_transform is not None:
            lines.append(f"    Batch transform: {self.batch_transform!r}")
        if self.transform is not None:
            lines.append(f"    Transform: {self.transform!r}")
        return "\n".join(lines)
