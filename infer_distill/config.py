"""Distillation configuration: frozen dataclasses, presets in a registry, dict round trips.

The exact config is written into ``index.json`` (provenance) via :meth:`DistillConfig.to_dict`;
:meth:`DistillConfig.from_dict` is its inverse. Presets carry DESIGN section 2's reference
settings; the CLI starts from a preset and applies overrides with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infer_data.errors import ConfigError
from infer_data.registry import Registry


CLIP_MODES = ("forward", "save")  # OptimConfig.clip
JITTER_MODES = ("shift", "roll")  # AugmentConfig.jitter_mode


@dataclass(frozen=True)
class OptimConfig:
    """Compensator optimization (INFER: Adam on u, cosine decay)."""

    lr: float = 0.25  # Adam learning rate, in normalized-image units as the reference code
    iterations: int = 1000  # optimization steps per compensator
    r_bn: float = 1.0  # weight of the BatchNorm-statistics term against cross-entropy
    first_bn_multiplier: float = 10.0  # extra weight of the first BN layer that fires
    betas: tuple[float, float] = (0.5, 0.9)  # Adam betas
    clip: str = "forward"  # "forward": clamp base + u to [0, 1] each step and keep |u| <= 1; "save": official, unclamped, clipped when stored

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.iterations < 1 or self.r_bn < 0 or self.first_bn_multiplier < 0:
            raise ConfigError(f"optim: need lr > 0, iterations >= 1, r_bn >= 0, first_bn_multiplier >= 0; got {self}")
        if self.clip not in CLIP_MODES:
            raise ConfigError(f"--clip {self.clip!r} is not known; choose one of {', '.join(CLIP_MODES)}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optim: betas must lie in [0, 1), got {self.betas}")


@dataclass(frozen=True)
class AugmentConfig:
    """Per-step random augmentation of base + u before the teacher (no wrap-around unless jitter_mode="roll")."""

    jitter: int = 4  # max random shift in pixels, each axis, zero-padded
    resized_crop: bool = False  # RandomResizedCrop back to the image size (large images)
    crop_scale: tuple[float, float] = (0.08, 1.0)  # area fraction range of the resized crop
    flip: bool = False  # random horizontal flip, p = 0.5
    jitter_mode: str = "shift"  # "shift": +-jitter px, zero-filled; "roll": official, 0..jitter px with wrap-around

    def __post_init__(self) -> None:
        if self.jitter < 0:
            raise ConfigError(f"augment: jitter must be >= 0 pixels, got {self.jitter}")
        if self.jitter_mode not in JITTER_MODES:
            raise ConfigError(f"--jitter-mode {self.jitter_mode!r} is not known; choose one of {', '.join(JITTER_MODES)}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"augment: crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher: an architecture name and its checkpoint file."""

    arch: str  # registered architecture (see infer_distill.teachers.list_teachers)
    checkpoint: str  # path of a checkpoint written by save_teacher (or a bare state_dict)

    @classmethod
    def parse(cls, text: str) -> TeacherSpec:
        """``"ARCH=PATH"`` -> TeacherSpec.

        Raises:
            ConfigError: no ``=`` or an empty side.
        """
        arch, sep, path = text.partition("=")
        if not sep or not arch.strip() or not path.strip():
            raise ConfigError(f"--teacher {text!r} must look like ARCH=CHECKPOINT, e.g. resnet18=teachers/r18.pt")
        return cls(arch.strip(), path.strip())


@dataclass(frozen=True)
class DistillConfig:
    """Everything that determines a distilled dataset (with the teachers' weights)."""

    dataset: str = "embedded"  # source spec, see infer_distill.sources.list_sources
    ipc: int = 10  # stored-image budget per class
    teachers: tuple[TeacherSpec, ...] = ()  # one compensator per teacher per group; all teachers label
    compensators: bool = True  # False: M = 0, random real images with static labels (baseline)
    seed: int = 0  # base selection and per-group augmentation streams
    batch_groups: int = 16  # groups optimized together in one batch (per-group BN statistics)
    label_batch: int = 256  # instances per teacher forward when labelling
    data_root: str | None = None  # folder of torchvision-layout data (cifar10, cifar100, fashion-mnist)
    image_size: int | None = None  # resize image-folder sources to this side (e.g. 224)
    preset: str = "custom"  # the preset this config started from (informational)
    base_codec: str = ""  # infer_data codec name for base images ("npy", "png", "jpeg"); "" = writer default
    compensator_codec: str = ""  # "fp16" or "int8"; "" = writer default
    label_codec: str = ""  # "fp16", "topk" or "none"; "" = writer default
    shard_size: int = 0  # groups per shard; 0 = one optimization chunk, capped at 256 MiB raw (see infer_distill.layout)
    normalization: str = "source"  # "source": the source's training statistics; a named set, e.g. "imagenet" (torchvision's)
    dataset_name: str = ""  # dataset.name in the index (picks evaluate's recipe and the ratios' train set); "" = the source's name
    card_name: str = ""  # name of the published set, for its card (provenance.card.name); "" = "{dataset name}-ipc{ipc}"
    card_license: str = ""  # licence of the published set, for its card (provenance.card.license); "" = not stated
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.ipc < 1:
            raise ConfigError(f"--ipc must be >= 1, got {self.ipc}")
        if self.batch_groups < 1 or self.label_batch < 1:
            raise ConfigError(f"--batch-groups and label_batch must be >= 1, got {self.batch_groups} and {self.label_batch}")
        if self.shard_size < 0:
            raise ConfigError(f"--shard-size must be a number of groups >= 1 (or 0 for the default), got {self.shard_size}")
        for name in ("base", "compensator", "label"):
            _check_codec(name, getattr(self, f"{name}_codec"))
        _check_normalization(self.normalization)
        if not self.dataset:
            raise ConfigError(f"preset {self.preset} has no default dataset; pass --dataset (e.g. imagefolder:PATH)")

    @property
    def codecs(self) -> dict[str, dict[str, Any]]:
        """Codec specs for ShardWriter (``"jpeg:75"`` -> quality 75), only the fields that are set."""
        from infer_data.codecs import parse_codec

        chosen = {"base": self.base_codec, "compensators": self.compensator_codec, "labels": self.label_codec}
        return {k: parse_codec(k, v) for k, v in chosen.items() if v}

    @property
    def m(self) -> int:
        """Compensators per group."""
        return len(self.teachers) if self.compensators else 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json_ready(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> DistillConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: unknown or mistyped fields.
        """
        try:
            d = dict(obj)
            d["teachers"] = tuple(TeacherSpec(**t) for t in d.get("teachers", ()))
            o = dict(d.get("optim", {}))
            if "betas" in o:
                o["betas"] = tuple(o["betas"])
            a = dict(d.get("augment", {}))
            if "crop_scale" in a:
                a["crop_scale"] = tuple(a["crop_scale"])
            d["optim"], d["augment"] = OptimConfig(**o), AugmentConfig(**a)
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"distill config: {exc}; compare with DistillConfig().to_dict()") from exc


def _check_codec(name: str, value: str) -> None:
    from infer_data import InferError, list_codecs
    from infer_data.codecs import parse_codec
    from infer_data.import_codecs import MINOR_2_CODECS

    field_name = {"compensator": "compensators", "label": "labels"}.get(name, name)
    if not value:
        return
    writable = [c for c in list_codecs(field_name) if (field_name, c) not in MINOR_2_CODECS]  # the others are for `infer import`
    if value.partition(":")[0] not in writable:
        what = "is for sets packed by `infer import`" if value.partition(":")[0] in list_codecs(field_name) else f"is not a {field_name} codec"
        raise ConfigError(f"--{name}-codec {value!r} {what}; choose one of "
                          f"{', '.join(writable)} (optionally NAME:VALUE, e.g. jpeg:75, topk:5)")
    try:
        parse_codec(field_name, value)
    except InferError as exc:
        raise ConfigError(f"--{name}-codec: {exc}") from exc


def _check_normalization(name: str) -> None:
    from .sources import list_normalizations

    if name not in list_normalizations():
        raise ConfigError(f"--normalization {name!r} is not known; choose one of {', '.join(list_normalizations())}")


def json_ready(obj: Any) -> Any:
    """Tuples -> lists, recursively."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


PRESETS: Registry[Callable[[], DistillConfig]] = Registry("preset")


@PRESETS.register("embedded")
def _embedded() -> DistillConfig:
    """The embedded Fashion-MNIST subset, sized for a CPU demo (fewer iterations than CIFAR).

    Bases as one zstd-compressed array per group: for 28 x 28 images per-image PNG members cost
    more in tar framing than they save (95 KB against 156 KB at ipc 10).
    """
    return DistillConfig(dataset="embedded", preset="embedded", base_codec="npy", optim=OptimConfig(iterations=200))


@PRESETS.register("cifar10")
def _cifar10() -> DistillConfig:
    """CIFAR reference settings: lr 0.25, 1000 iterations, r_bn 1, jitter 4."""
    return DistillConfig(dataset="cifar10", preset="cifar10")


@PRESETS.register("cifar100")
def _cifar100() -> DistillConfig:
    """As CIFAR-10."""
    return DistillConfig(dataset="cifar100", preset="cifar100")


@PRESETS.register("tinyimagenet")
def _tinyimagenet() -> DistillConfig:
    """Tiny-ImageNet (imagefolder): the CIFAR settings; the dataset path must be given."""
    return DistillConfig(dataset="imagefolder:tiny-imagenet-200", preset="tinyimagenet", dataset_name="tinyimagenet")


@PRESETS.register("imagenet1k")
def _imagenet1k() -> DistillConfig:
    """ImageNet reference settings: 224 px, lr 0.25, 2000 iterations, r_bn 0.01, jitter 32, crop + flip.

    Images are normalized with torchvision's ImageNet mean/std, the statistics its pretrained
    teachers were trained with (the folder's own statistics are never computed). Bases are stored
    as JPEG q90 (the codec ImageNet itself is published in): lossless PNG at 224 px is larger than
    the reference layout of one JPEG per instance (docs/benchmarks.md, "ImageNet shape").
    """
    return DistillConfig(
        dataset="imagefolder:imagenet", preset="imagenet1k", dataset_name="imagenet1k", image_size=224, batch_groups=1, normalization="imagenet",
        base_codec="jpeg:90",
        optim=OptimConfig(iterations=2000, r_bn=0.01),
        augment=AugmentConfig(jitter=32, resized_crop=True, flip=True),
    )


# which preset a dataset name selects when --preset is not given
DEFAULT_PRESET = {"embedded": "embedded", "fashion-mnist": "embedded", "cifar10": "cifar10", "cifar100": "cifar100"}


def list_presets(pattern: str = "*") -> list[str]:
    """Sorted preset names."""
    return PRESETS.list(pattern)


MODES = ("default", "official")

# preset -> the fixed normalization constants the official code uses for that dataset
OFFICIAL_NORMALIZATION = {"cifar10": "cifar10", "cifar100": "cifar100", "tinyimagenet": "tinyimagenet", "imagenet1k": "imagenet"}


def official(cfg: DistillConfig) -> DistillConfig:
    """``cfg`` with the official INFER code's choices (decision 0020).

    The teacher sees the unclamped ``base + u`` and only the stored compensator is clipped
    (``optim.clip="save"``), jitter is ``torch.roll`` by 0..jitter pixels (``jitter_mode="roll"``),
    and the CIFAR-10/100, Tiny-ImageNet and ImageNet presets normalize with the official fixed
    constants instead of the data's statistics. Other presets keep their normalization.
    """
    return dataclasses.replace(
        cfg, preset=f"{cfg.preset}+official", normalization=OFFICIAL_NORMALIZATION.get(cfg.preset, cfg.normalization),
        optim=dataclasses.replace(cfg.optim, clip="save"), augment=dataclasses.replace(cfg.augment, jitter_mode="roll"))


def create_preset(name: str, *, mode: str = "default", **overrides: Any) -> DistillConfig:
    """The preset ``name`` (in ``mode``) with top-level fields replaced by ``overrides`` (None values ignored).

    Args:
        mode: "default" (the package's choices) or "official" (:func:`official`, applied before the overrides).

    Raises:
        RegistryError: unknown preset.
        ConfigError: an unknown mode or field, or an invalid value.
    """
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r} is not known; choose one of {', '.join(MODES)}")
    cfg = PRESETS.get(name)()
    cfg = official(cfg) if mode == "official" else cfg
    fields = {f.name for f in dataclasses.fields(DistillConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}")
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
