"""The teacher registry itself and the argument checks every builder shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from torch import nn

from infer_data.errors import ConfigError
from infer_data.registry import Registry

SMALL_IMAGE_MAX = 64  # images up to this many pixels per side get the small-image (stride-1 stem) variants


class TeacherBuilder(Protocol):
    """``(num_classes, *, in_channels, image_size) -> nn.Module``."""

    def __call__(self, num_classes: int, *, in_channels: int, image_size: int) -> nn.Module: ...


TEACHERS: Registry[TeacherBuilder] = Registry("teacher architecture")

# arch -> torchvision weights enum name, for the ImageNet layouts that have pretrained weights
_WEIGHT_ENUMS: dict[str, str] = {}


def register_teacher(name: str, *, weights_enum: str | None = None) -> Callable[[TeacherBuilder], TeacherBuilder]:
    """Decorator registering a builder under ``name``.

    Args:
        name: the architecture name users pass (``--teacher NAME=CKPT``).
        weights_enum: torchvision ``*_Weights`` class name whose members ``weights=`` may name.

    Raises:
        RegistryError: ``name`` is taken.
    """
    if weights_enum is not None:
        _WEIGHT_ENUMS[name] = weights_enum
    return TEACHERS.register(name)


def check_arch_args(arch: str, num_classes: int, in_channels: int, image_size: int) -> None:
    """Validate the size arguments of a teacher.

    Raises:
        ConfigError: naming the bad argument and its valid range.
    """
    if num_classes < 2:
        raise ConfigError(f"teacher {arch}: num_classes must be >= 2, got {num_classes}")
    if in_channels not in (1, 3):
        raise ConfigError(f"teacher {arch}: in_channels must be 1 or 3, got {in_channels}")
    if image_size < 8:
        raise ConfigError(f"teacher {arch}: image_size must be >= 8 pixels, got {image_size}")


def resolve_weights(arch: str, weights: str, *, num_classes: int, in_channels: int, image_size: int) -> Any:
    """The torchvision weights enum member ``weights`` of ``arch``, checked against the sizes.

    Nothing is downloaded here.

    Raises:
        ConfigError: no such weights, or sizes the ImageNet weights cannot serve.
    """
    import torchvision.models as tvm

    enum_name = _WEIGHT_ENUMS.get(arch)
    if enum_name is None:
        known = ", ".join(sorted(_WEIGHT_ENUMS))
        raise ConfigError(f"teacher {arch}: has no torchvision weights; weights= works for {known}, or train one with `infer teacher train`")
    enum = getattr(tvm, enum_name)
    if weights not in enum.__members__:
        raise ConfigError(f"teacher {arch}: unknown weights {weights!r}; choose one of {', '.join(enum.__members__)}")
    member = enum[weights]
    want_nc = len(member.meta.get("categories", [])) or 1000
    if image_size <= SMALL_IMAGE_MAX or in_channels != 3 or num_classes != want_nc:
        raise ConfigError(
            f"teacher {arch}: weights {weights} need 3-channel images larger than {SMALL_IMAGE_MAX} px and "
            f"{want_nc} classes, got in_channels={in_channels}, image_size={image_size}, num_classes={num_classes}"
        )
    return member


def weights_normalization(member: Any) -> tuple[list[float], list[float]]:
    """The per-channel ``(mean, std)`` a torchvision weights enum member was trained with.

    Registered weights carry their normalization in their inference transform (torchvision's
    ImageNet weights: mean 0.485/0.456/0.406, std 0.229/0.224/0.225). Nothing is downloaded.
    """
    transform = member.transforms()
    return [float(v) for v in transform.mean], [float(v) for v in transform.std]
