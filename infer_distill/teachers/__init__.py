"""Teacher architectures in a registry, plus checkpoint save/load.

Every entry is a builder ``(num_classes, *, in_channels, image_size) -> nn.Module``. Images up to
:data:`SMALL_IMAGE_MAX` pixels get small-image variants (stride-1 stems, no stem max-pool), larger
ones the torchvision ImageNet layouts, which also accept torchvision weights by name
(``weights="IMAGENET1K_V1"``). Importing this package registers the built-in architectures.

Checkpoints are plain dicts saved with :func:`torch.save` and loaded with ``weights_only=True``::

    {"arch": str, "num_classes": int, "in_channels": int, "image_size": int,
     "state_dict": dict[str, Tensor], "meta": dict}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from infer_data.errors import ConfigError

# the builder modules register their architectures on import
from . import cifar_resnet as cifar_resnet
from . import convnet as convnet
from . import official_cifar as official_cifar
from . import torchvision_nets as torchvision_nets
from ._registry import SMALL_IMAGE_MAX as SMALL_IMAGE_MAX
from ._registry import TEACHERS as TEACHERS
from ._registry import TeacherBuilder as TeacherBuilder
from ._registry import check_arch_args as check_arch_args
from ._registry import register_teacher as register_teacher
from ._registry import resolve_weights as resolve_weights
from ._registry import weights_normalization as weights_normalization
from .checkpoint import load_teacher as load_teacher
from .checkpoint import save_teacher as save_teacher
from .checkpoint import teacher_sha256 as teacher_sha256

__all__ = [
    "SMALL_IMAGE_MAX",
    "TEACHERS",
    "TeacherBuilder",
    "check_arch_args",
    "create_teacher",
    "is_teacher",
    "list_teachers",
    "load_teacher",
    "open_teacher",
    "register_teacher",
    "resolve_weights",
    "save_teacher",
    "teacher_sha256",
    "weights_cache_dir",
    "weights_normalization",
]


def list_teachers(pattern: str = "*") -> list[str]:
    """Sorted names of the registered teacher architectures matching ``pattern`` (fnmatch)."""
    return TEACHERS.list(pattern)


def is_teacher(name: str) -> bool:
    """Whether ``name`` is a registered architecture."""
    return name in TEACHERS


def create_teacher(
    arch: str,
    num_classes: int,
    *,
    in_channels: int = 3,
    image_size: int = 32,
    weights: str | None = None,
) -> nn.Module:
    """Build a teacher network (randomly initialized unless ``weights`` names torchvision weights).

    Args:
        arch: registered name, see :func:`list_teachers`.
        num_classes: width of the output logits.
        in_channels: 1 (grayscale) or 3 (colour).
        image_size: side of the square input in pixels; <= 64 selects the small-image variant.
        weights: torchvision weights name such as ``"IMAGENET1K_V1"`` (ImageNet layout only:
            image_size > 64, 3 channels, 1000 classes); they are loaded from torchvision's cache
            or downloaded by torchvision.

    Returns:
        The module, in training mode.

    Raises:
        RegistryError: unknown ``arch``, listing the known ones.
        ConfigError: invalid sizes, or weights that do not exist or do not fit.
    """
    builder = TEACHERS.get(arch)
    check_arch_args(arch, num_classes, in_channels, image_size)
    if weights is None:
        return builder(num_classes, in_channels=in_channels, image_size=image_size)
    enum = resolve_weights(arch, weights, num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    model = builder(num_classes, in_channels=in_channels, image_size=image_size)
    try:
        state = enum.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # no network, a damaged cache file: torchvision raises many types
        raise ConfigError(
            f"teacher {arch}: cannot load torchvision weights {weights} ({type(exc).__name__}); without network access put "
            f"{enum.url.rsplit('/', 1)[-1]} into {weights_cache_dir()} or pass a checkpoint file"
        ) from exc
    model.load_state_dict(state)
    return model


def weights_cache_dir() -> str:
    """Where torchvision looks for downloaded weights ($TORCH_HOME/hub/checkpoints)."""
    import torch.hub

    return f"{torch.hub.get_dir()}/checkpoints"


def open_teacher(arch: str, source: str, *, num_classes: int, in_channels: int, image_size: int) -> tuple[nn.Module, dict[str, Any]]:
    """A frozen eval-mode teacher from a checkpoint file or a torchvision weights name.

    Args:
        source: a checkpoint path, or a weights name such as ``IMAGENET1K_V1`` when no file of
            that name exists.

    Returns:
        ``(model, provenance)`` where provenance holds ``sha256`` of the weight file (the cached
        torchvision file for named weights) and, for named weights, ``weights``, ``url`` and the
        ``mean``/``std`` the weights were trained with (:func:`weights_normalization`).

    Raises:
        ConfigError: a bad checkpoint or unknown weights.
    """
    if Path(source).is_file() or not source.replace("_", "").isalnum():
        model = load_teacher(arch, source, num_classes=num_classes, in_channels=in_channels, image_size=image_size)
        return model, {"sha256": teacher_sha256(source)}
    model = create_teacher(arch, num_classes, in_channels=in_channels, image_size=image_size, weights=source).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    member = resolve_weights(arch, source, num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    cached = Path(weights_cache_dir()) / member.url.rsplit("/", 1)[-1]
    mean, std = weights_normalization(member)
    return model, {"sha256": teacher_sha256(cached), "weights": str(member), "url": member.url, "mean": mean, "std": std}

