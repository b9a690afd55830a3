"""Dataset sources in a registry: where base images, training data and normalization come from.

A source is created from a spec string, ``NAME`` or ``NAME:ARG`` (``imagefolder:/data/cifar10``),
and one split (``"train"`` or ``"test"``). Every source exposes the same small interface:
``classes``, ``image_shape`` (C, H, W), ``mean``/``std`` of the *training* split in [0, 1] units,
``targets`` (int64 (N,)), ``len()`` and ``images(indices) -> uint8 (B, C, H, W)``.

Normalization: a run normalizes images either with its source's training statistics
(``"source"``) or with a named set of constants from :data:`NORMALIZATIONS`, such as
``"imagenet"``, torchvision's ImageNet mean/std that its pretrained weights expect
(:func:`normalization`). Sources compute their statistics only when they are asked for.

Built-ins: ``embedded`` (the Fashion-MNIST subset shipped in the package, the default),
``fashion-mnist`` (official idx files), ``cifar10`` and ``cifar100`` (torchvision's classes,
``download=False``) and ``imagefolder:PATH`` (``PATH/train`` plus ``PATH/val`` or ``PATH/test``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from infer_data.errors import ConfigError, DatasetNotFoundError
from infer_data.registry import Registry

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")
DEFAULT_SOURCE = "embedded"
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"


class Source:
    """One split of a labelled image dataset (see the module docstring for the contract)."""

    name: str  # registry name, recorded in the index (e.g. "cifar10")
    spec: str  # the full spec that recreates the source (e.g. "imagefolder:/data/c10")
    split: str  # "train" or "test"
    classes: list[str]  # class names, index = class id
    image_shape: tuple[int, int, int]  # (C, H, W)
    mean: list[float]  # per-channel mean of the training split, [0, 1] units
    std: list[float]  # per-channel std of the training split, [0, 1] units
    targets: torch.Tensor  # int64 (N,) class ids

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def images(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """uint8 (B, C, H, W) images at ``indices`` of this split."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(spec={self.spec!r}, split={self.split!r}, n={len(self)}, shape={self.image_shape})"


class TensorSource(Source):
    """A source whose split is held in memory as one uint8 tensor (N, C, H, W)."""

    def __init__(self, *, name: str, spec: str, split: str, data: torch.Tensor, targets: torch.Tensor,
                 classes: list[str], stats: tuple[list[float], list[float]]) -> None:
        self.name, self.spec, self.split = name, spec, split
        self.data = data.contiguous()  # (N, C, H, W) uint8
        self.targets = targets.to(torch.int64)
        self.classes = list(classes)
        self.image_shape = tuple(int(v) for v in data.shape[1:])  # type: ignore[assignment]
        self.mean, self.std = list(stats[0]), list(stats[1])

    def images(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """uint8 (B, C, H, W) images at ``indices``."""
        return self.data[torch.as_tensor(indices, dtype=torch.int64)]


SourceBuilder = Callable[[str | None, str, str | None, int | None], Source]
SOURCES: Registry[SourceBuilder] = Registry("dataset source")


def register_source(name: str) -> Callable[[SourceBuilder], SourceBuilder]:
    """Decorator: ``builder(arg, split, data_root, image_size) -> Source`` under ``name``."""
    return SOURCES.register(name)


def list_sources(pattern: str = "*") -> list[str]:
    """Sorted names of the registered sources."""
    return SOURCES.list(pattern)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"imagefolder:/x"`` -> ``("imagefolder", "/x")``; ``"cifar10"`` -> ``("cifar10", None)``."""
    name, sep, arg = spec.partition(":")
    return name.strip(), (arg if sep else None)


def create_source(spec: str = DEFAULT_SOURCE, split: str = "train", *, data_root: str | None = None,
                  image_size: int | None = None) -> Source:
    """Open one split of the dataset that ``spec`` names.

    Args:
        spec: ``NAME`` or ``NAME:ARG`` (see :func:`list_sources`).
        split: "train" or "test" (an image folder's test split is ``val/`` or ``test/``).
        data_root: folder holding torchvision-layout data (cifar10, cifar100, fashion-mnist).
        image_size: resize image-folder images (shorter side, then centre crop) to this side.

    Raises:
        RegistryError: unknown source name.
        ConfigError: bad split or a spec argument the source does not take.
        DatasetNotFoundError: the data is not where the spec and ``data_root`` point.
    """
    if split not in SPLITS:
        raise ConfigError(f"split={split!r} is not valid; choose one of {', '.join(SPLITS)}")
    name, arg = parse_spec(spec)
    builder = SOURCES.get(name)
    return builder(arg, split, data_root, image_size)


# name -> (mean, std) per channel, [0, 1] units
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision's ImageNet-1k weights
    # the fixed constants of the official INFER code (its teachers were trained with them)
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "tinyimagenet": ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),
}
SOURCE_NORMALIZATION = "source"


def list_normalizations() -> list[str]:
    """``"source"`` and the named constant sets, sorted."""
    return sorted([SOURCE_NORMALIZATION, *NORMALIZATIONS])


def normalization(name: str, source: Source) -> tuple[list[float], list[float]]:
    """Per-channel ``(mean, std)`` in [0, 1] units that a run named ``name`` uses on ``source``.

    ``"source"`` reads the source's training statistics (computing them if needed); any other
    name is a constant set from :data:`NORMALIZATIONS` and reads no image.

    Raises:
        ConfigError: an unknown name, or constants for another number of channels.
    """
    if name == SOURCE_NORMALIZATION:
        return list(source.mean), list(source.std)
    if name not in NORMALIZATIONS:
        raise ConfigError(f"--normalization {name!r} is not known; choose one of {', '.join(list_normalizations())}")
    mean, std = NORMALIZATIONS[name]
    if len(mean) != source.image_shape[0]:
        raise ConfigError(f"--normalization {name} holds {len(mean)}-channel statistics but {source.spec} has "
                          f"{source.image_shape[0]} channel(s); use --normalization source")
    return list(mean), list(std)


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (population) of uint8 (N, C, H, W) images, in [0, 1] units."""
    c = images.shape[1]
    total, sq, count = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    for start in range(0, images.shape[0], chunk):
        x = images[start:start + chunk].to(torch.float64).div_(255.0).transpose(0, 1).reshape(c, -1)  # (C, n*H*W)
        total += x.sum(1)
        sq += (x * x).sum(1)
        count += x.shape[1]
    mean = total / count
    std = (sq / count - mean * mean).clamp_min(0).sqrt()
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def _no_arg(name: str, arg: str | None) -> None:
    if arg:
        raise ConfigError(f"dataset {name} takes no ':{arg}' argument; use plain {name!r} (and --data-root for its folder)")


@register_source("embedded")
def _embedded(arg: str | None, split: str, data_root: str | None, image_size: int | None) -> Source:
    from .embedded import load_embedded

    _no_arg("embedded", arg)
    images, labels, _, classes = load_embedded(split)
    stats = _embedded_stats()
    return TensorSource(name="embedded", spec="embedded", split=split, data=torch.from_numpy(images),
                        targets=torch.from_numpy(labels), classes=classes, stats=stats)


@functools.lru_cache(maxsize=1)
def _embedded_stats() -> tuple[list[float], list[float]]:
    from .embedded import load_embedded

    return channel_stats(torch.from_numpy(load_embedded("train")[0]))


@register_source("fashion-mnist")
def _fashion_mnist(arg: str | None, split: str, data_root: str | None, image_size: int | None) -> Source:
    from .idx import FASHION_MNIST_CLASSES, read_fashion_mnist

    _no_arg("fashion-mnist", arg)
    root = data_root or FASHION_MNIST_ROOT
    images, labels = read_fashion_mnist(root, split)
    stats = _cached_stats("fashion-mnist", root, lambda: torch.from_numpy(read_fashion_mnist(root, "train")[0][:, None]))
    return TensorSource(name="fashion-mnist", spec="fashion-mnist", split=split, data=torch.from_numpy(images[:, None].copy()),
                        targets=torch.from_numpy(labels.astype(np.int64)), classes=FASHION_MNIST_CLASSES, stats=stats)


_STATS: dict[tuple[str, str], tuple[list[float], list[float]]] = {}


def _cached_stats(name: str, root: str, load_train: Callable[[], torch.Tensor]) -> tuple[list[float], list[float]]:
    key = (name, str(Path(root).resolve()))
    if key not in _STATS:
        _STATS[key] = channel_stats(load_train())
    return _STATS[key]


def _torchvision_cifar(name: str, arg: str | None, split: str, data_root: str | None) -> Source:
    import torchvision.datasets as tvd

    _no_arg(name, arg)
    cls, folder = {"cifar10": (tvd.CIFAR10, "cifar-10-batches-py"), "cifar100": (tvd.CIFAR100, "cifar-100-python")}[name]
    if data_root is None:
        raise DatasetNotFoundError(f"dataset {name} needs --data-root, the folder that holds {folder}/")

    def load(train: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        try:
            ds = cls(data_root, train=train, download=False)
        except RuntimeError as exc:
            raise DatasetNotFoundError(
                f"dataset {name}: not found in {data_root} (expected {Path(data_root) / folder}); download it once with "
                f"torchvision.datasets.{cls.__name__}(root, download=True) or fix --data-root"
            ) from exc
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets), list(ds.classes)

    data, targets, classes = load(split == "train")
    stats = _cached_stats(name, data_root, lambda: data if split == "train" else load(True)[0])
    return TensorSource(name=name, spec=name, split=split, data=data, targets=targets, classes=classes, stats=stats)


@register_source("cifar10")
def _cifar10(arg: str | None, split: str, data_root: str | None, image_size: int | None) -> Source:
    return _torchvision_cifar("cifar10", arg, split, data_root)


@register_source("cifar100")
def _cifar100(arg: str | None, split: str, data_root: str | None, image_size: int | None) -> Source:
    return _torchvision_cifar("cifar100", arg, split, data_root)


@register_source("imagefolder")
def _imagefolder(arg: str | None, split: str, data_root: str | None, image_size: int | None) -> Source:
    from .imagefolder import ImageFolderSource

    if not arg:
        raise ConfigError("dataset imagefolder needs a path: imagefolder:PATH (PATH/train and PATH/val or PATH/test)")
    return ImageFolderSource(arg, split, image_size=image_size)
