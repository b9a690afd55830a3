"""Plan a distillation before any work: G, instances, stored images, bytes by field, ratios.

Counts follow the budget (:mod:`infer_distill.budget`): G = floor(ipc * K / (K + M)), stored
images G * (K + M), instances K * (M + 1) * G. Bytes are modelled member by member as
:mod:`infer_data.writer` writes them: every member is a 512-byte tar header plus its data
padded to 512 bytes, and every shard ends with two 512-byte zero blocks; shards hold
``--shard-size`` groups each, as ``infer distill`` cuts them (:mod:`infer_distill.layout`).

Exact: uncompressed ``.npy`` members (header from numpy's own writer plus the array bytes) --
``npy:none`` bases, ``fp16:none`` / ``int8:none`` compensators, ``fp16:none`` and top-k
labels with zstd off, ``none`` labels -- and the tar framing around them.

Estimates (``"estimate": true``): PNG, JPEG, WebP and zstd members, ``meta.json`` (its source
indices and final losses vary), ``index.json`` and the reference layout. Entropy-coded bytes
are ``raw values x a measured constant``; ``bench/plan_constants.py`` measures them with the
project's own codecs at their default levels (PNG level 6, zstd level 3; other levels are
planned with the same constants) on real images, a group's K images stacked as the writer
stacks them:

- ``gray28``: 200 images of the embedded Fashion-MNIST subset, groups of K = 10;
- ``rgb32``: the mean of 200 CIFAR-10 (JPEG q75 copy) images in groups of K = 10 and 400
  Tiny-ImageNet (32 px JPEG q90 copy) images in groups of K = 200;
- ``rgb64`` and ``rgb224``: no real 64 or 224 px training images were available where the
  constants were measured, so these come from the five colour photos that ship with
  scikit-image 0.26 (astronaut, chelsea, coffee, motorcycle_left, rocket), each resized to a
  shorter side of 256 and centre-cropped to 224 (ImageNet's evaluation crop), then downscaled
  to 64 for ``rgb64``. Five photos are a small sample: treat 64 and 224 px figures as +-30%.

A source uses the table of its channel count nearest to its side (log scale). The zstd ratios
of compensators and labels were measured on a real ``infer distill`` run on the CIFAR-10 copy
(ipc 10, two ConvNet teachers, 200 iterations, G = 8); at K = 1000 they are an extrapolation.
The reference layout (one JPEG q75 file per instance, as ``infer stats`` encodes it, plus fp32
labels) uses the per-file JPEG q75 constant times the growth of a composite (base +
compensator) over its base measured on the same run. Planned against that run's own bytes
(``infer stats``), the total came out 2.7% high (bases +5%) and the reference layout 3.6% high.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from infer_data.codecs import parse_codec
from infer_data.constants import DEFAULT_ZSTD_LEVEL
from infer_data.errors import ConfigError, InferError
from infer_data.import_codecs import MINOR_2_CODECS
from infer_data.stats import paper_ratios
from infer_data.writer import DEFAULT_CODECS

from .budget import num_groups, stored_images
from .layout import Layout as ShardLayout
from .layout import default_shard_size
from .plan_sources import SourceSize, source_size

if TYPE_CHECKING:
    from .config import DistillConfig

TAR_BLOCK = 512
TAR_END = 2 * TAR_BLOCK

# Bytes per stored uint8 value (one channel of one pixel), measured by bench/plan_constants.py.
BASE_BYTES_PER_VALUE: dict[str, dict[str, float]] = {
    "gray28": {"png": 0.5287, "npy": 0.5800, "jpeg:50": 0.2930, "jpeg:75": 0.3934, "jpeg:90": 0.5706, "jpeg:95": 0.7382,
               "jpeg:100": 1.1151, "webp:50": 0.2231, "webp:75": 0.2667, "webp:90": 0.3775, "webp:95": 0.4390,
               "webp:100": 0.5241, "webp:lossless": 0.5137, "file_jpeg:75": 0.7737},
    "rgb32": {"png": 0.7487, "npy": 0.9799, "jpeg:50": 0.0834, "jpeg:75": 0.1099, "jpeg:90": 0.1674, "jpeg:95": 0.2181,
              "jpeg:100": 0.3304, "webp:50": 0.0743, "webp:75": 0.0950, "webp:90": 0.1518, "webp:95": 0.1862,
              "webp:100": 0.2322, "webp:lossless": 0.5039, "file_jpeg:75": 0.3028},
    "rgb64": {"png": 0.6785, "npy": 1.0023, "jpeg:50": 0.0721, "jpeg:75": 0.1022, "jpeg:90": 0.1623, "jpeg:95": 0.2226,
              "jpeg:100": 0.3941, "webp:50": 0.0629, "webp:75": 0.0815, "webp:90": 0.1347, "webp:95": 0.1701,
              "webp:100": 0.2179, "webp:lossless": 0.5137, "file_jpeg:75": 0.1428},
    "rgb224": {"png": 0.5588, "npy": 0.7976, "jpeg:50": 0.0424, "jpeg:75": 0.0625, "jpeg:90": 0.1036, "jpeg:95": 0.1480,
               "jpeg:100": 0.2907, "webp:50": 0.0343, "webp:75": 0.0458, "webp:90": 0.0871, "webp:95": 0.1153,
               "webp:100": 0.1618, "webp:lossless": 0.4239, "file_jpeg:75": 0.0658},
}
QUALITIES = (50, 75, 90, 95, 100)  # lossy qualities measured
# zstd (default level) size over uncompressed size, measured on a real distilled set (bench/plan_constants.py).
ZSTD_RATIO = {"compensators/fp16": 0.9133, "compensators/int8": 0.8171, "labels/fp16": 0.9519, "labels/topk": 0.7064}
COMPOSITE_OVER_BASE_JPEG75 = 1.0687  # JPEG q75 bytes of base + compensator over the base's own, same set
PROVENANCE_BYTES = 2000  # index.json provenance block of that `infer distill` run (config, software, teachers)

# (label, codec spec) of every choice the plan lists per field.
CHOICES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "base": [("npy:none", {"name": "npy", "zstd_level": None}), ("npy", {"name": "npy"}), ("png", {"name": "png"}),
             ("jpeg:90", {"name": "jpeg", "quality": 90}), ("jpeg:75", {"name": "jpeg", "quality": 75})],
    "compensators": [("fp16:none", {"name": "fp16", "zstd_level": None}), ("fp16", {"name": "fp16"}),
                     ("int8:none", {"name": "int8", "zstd_level": None}), ("int8", {"name": "int8"})],
    "labels": [("fp16:none", {"name": "fp16", "zstd_level": None}), ("fp16", {"name": "fp16"}),
               ("topk:10 zstd off", {"name": "topk", "k": 10, "zstd_level": None}), ("topk:10", {"name": "topk", "k": 10}),
               ("none", {"name": "none"})],
}
# whole layouts totalled besides the chosen one
LAYOUTS = {"uncompressed": {"base": "npy:none", "compensators": "fp16:none", "labels": "fp16:none"},
           "compact": {"base": "jpeg:75", "compensators": "int8", "labels": "topk:10"}}
FLAGS = {"base": "--base-codec", "compensators": "--compensator-codec", "labels": "--label-codec"}


@dataclass
class Shape:
    """Everything the byte model needs: K, M, G, NC, (C, H, W)."""

    k: int
    m: int
    g: int
    nc: int
    chw: tuple[int, int, int]

    @property
    def rows(self) -> int:
        """Label rows per group, K * (M + 1)."""
        return self.k * (self.m + 1)


@dataclass
class FieldBytes:
    """One field under one codec: its members' sizes in one group, and the total over G groups."""

    codec: str  # label shown to the user
    spec: dict[str, Any]  # the codec spec the writer records
    members: list[int]  # bytes of each member of one group
    bytes: int  # sum over all groups
    estimate: bool


@dataclass
class Layout:
    """A full codec combination: bytes by field, tar framing, shards and the ratio to the train set."""

    name: str
    codecs: dict[str, str]
    bytes: dict[str, int]  # base, compensators, labels, metadata, container, total
    shards: int
    estimated: list[str]  # keys of ``bytes`` that are estimates (meta.json and index.json always are)
    ratio_to_train_bytes: float


@dataclass
class Plan:
    """What ``infer plan`` reports (see :func:`make_plan`)."""

    source: dict[str, Any]
    ipc: int
    k: int
    m: int
    g: int
    budget_images: int
    stored_images: int
    instances: int
    shard_size: int  # groups per shard, as infer distill cuts them
    fields: dict[str, list[FieldBytes]]
    layouts: list[Layout]
    reference_layout: dict[str, Any]
    ratios: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


# --- exact pieces -----------------------------------------------------------------------------


def npy_bytes(dtype: Any, shape: tuple[int, ...]) -> int:
    """Exact size of ``np.save`` of an array of ``dtype`` and ``shape``: header plus data."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return len(buf.getvalue()) + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def tar_member_bytes(size: int) -> int:
    """Bytes one member of ``size`` bytes takes in a tar: header plus data padded to 512."""
    return TAR_BLOCK + -(-size // TAR_BLOCK) * TAR_BLOCK


def shard_sizes(group_bytes: int, groups: int, shard_size: int) -> list[int]:
    """File sizes of the shards of ``groups`` groups of ``group_bytes`` tar bytes, ``shard_size`` groups per shard.

    This is ``infer distill``'s layout (:mod:`infer_distill.layout`): shard s holds groups
    ``[s * S, (s + 1) * S)``, the last one fewer; each shard ends with two 512-byte zero blocks.
    """
    layout = ShardLayout(groups, shard_size, shard_size)
    return [len(layout.shard_groups(i)) * group_bytes + TAR_END for i in range(layout.num_shards)]


# --- per-field byte model ---------------------------------------------------------------------


def table_for(chw: tuple[int, int, int]) -> dict[str, float]:
    """The measured constants nearest to an image of shape ``chw`` (same channel count, nearest side)."""
    c, h, w = chw
    side = math.sqrt(h * w)
    names = [n for n in BASE_BYTES_PER_VALUE if n.startswith("gray" if c == 1 else "rgb")]
    return BASE_BYTES_PER_VALUE[min(names, key=lambda n: abs(math.log(side / int(n.lstrip("grayb")))))]


def base_per_value(spec: dict[str, Any], table: dict[str, float]) -> float:
    """Stored bytes per uint8 value of an entropy-coded base codec; lossy qualities interpolate linearly.

    Raises:
        ConfigError: a codec with no measured constants.
    """
    name = spec["name"]
    if name == "png" and spec.get("compress_level") == 0:
        return 1.0  # stored, not compressed
    key = f"{name}:lossless" if spec.get("lossless") else name
    qs = [q for q in QUALITIES if f"{name}:{q}" in table]
    if qs and key == name:
        return float(np.interp(int(spec.get("quality", 90)), qs, [table[f"{name}:{q}"] for q in qs]))
    if key not in table:
        raise ConfigError(f"--base-codec {name}: no measured size constants for it; plan with png, npy or jpeg")
    return table[key]


def base_members(spec: dict[str, Any], s: Shape) -> tuple[list[int], bool]:
    """Member sizes of one group's bases under ``spec`` and whether they are estimates.

    Image codecs are laid out as the writer lays them out for this shape (stacks cut below the
    format's largest side), and their estimate is split over the members by images held.
    """
    from infer_data.codecs import create_codec

    shape = (s.k, *s.chw)
    if spec["name"] == "npy" and spec.get("zstd_level", DEFAULT_ZSTD_LEVEL) is None:
        return [npy_bytes(np.uint8, shape)], False
    codec: Any = create_codec("base", spec)
    codec = codec.for_shape(shape) if hasattr(codec, "for_shape") else codec
    counts = codec.counts(s.k) if hasattr(codec, "counts") else [s.k]
    c, h, w = s.chw
    rows = codec.tile_height(h) if hasattr(codec, "tile_height") else h
    per = base_per_value(spec, table_for(s.chw))
    return [round(n * c * rows * w * per) for n in counts], True


def comp_members(spec: dict[str, Any], s: Shape) -> tuple[list[int], bool]:
    """Member sizes of one group's compensators (M x C x H x W) and whether they are estimates."""
    shape = (s.m, *s.chw)
    raw = npy_bytes(np.float16 if spec["name"] == "fp16" else np.int8, shape)
    zstd = spec.get("zstd_level", DEFAULT_ZSTD_LEVEL) is not None
    main = round(raw * ZSTD_RATIO[f"compensators/{spec['name']}"]) if zstd else raw
    scale = [npy_bytes(np.float32, (s.m,))] if spec["name"] == "int8" else []
    return [main, *scale], zstd


def label_members(spec: dict[str, Any], s: Shape) -> tuple[list[int], bool]:
    """Member sizes of one group's labels (K*(M+1) rows) and whether they are estimates."""
    if spec["name"] == "none":
        return [], False
    cols = s.nc if spec["name"] == "fp16" else 2 * min(int(spec.get("k", 10)), s.nc) + 1
    raw = npy_bytes(np.float16 if spec["name"] == "fp16" else np.uint16, (s.rows, cols))
    if spec.get("zstd_level", DEFAULT_ZSTD_LEVEL) is None:
        return [raw], False
    return [round(raw * ZSTD_RATIO[f"labels/{spec['name']}"])], True


MEMBERS = {"base": base_members, "compensators": comp_members, "labels": label_members}


def field_bytes(field_name: str, label: str, spec: dict[str, Any], s: Shape) -> FieldBytes:
    """One field under one codec, summed over the G groups."""
    members, estimate = MEMBERS[field_name](spec, s)
    return FieldBytes(label, spec, members, sum(members) * s.g, estimate)


def meta_bytes(s: Shape, images: int) -> int:
    """Estimated ``meta.json`` of one group: K class ids, K source indices spread over the split, M losses."""
    meta = {"class_ids": list(range(s.k)), "extra": {"final_loss": [1.23456] * s.m}, "group": s.g - 1,
            "source_indices": [(images * (2 * i + 1)) // (2 * s.k) for i in range(s.k)],
            "teachers": ["resnet18"] * s.m}
    return len(json.dumps(meta, sort_keys=True, separators=(",", ":"))) + 1


def index_bytes(src: SourceSize, s: Shape, shards: int, codecs: dict[str, dict[str, Any]]) -> int:
    """Estimated ``index.json``: dataset, method and codec blocks, one entry per shard, provenance."""
    from infer_data.index import DatasetIndex, DatasetInfo, MethodInfo, ShardEntry

    c = s.chw[0]
    names = list(src.class_names) or [f"n{i:08d}" for i in range(s.nc)]
    info = DatasetInfo(src.name, names, s.chw, [0.123456] * c, [0.123456] * c, source=src.spec)
    method = MethodInfo(s.k, s.m, s.g, 0, ["resnet18"] * s.m, producer="infer_distill 0.1.0")
    entries = [ShardEntry(f"shard-{i:06d}.tar", 10**9, "0" * 64, s.g, s.g * s.rows, 0) for i in range(shards)]
    return len(DatasetIndex(info, method, codecs, entries).to_json()) + PROVENANCE_BYTES


# --- whole layouts and the plan -----------------------------------------------------------------


def layout_bytes(name: str, chosen: dict[str, tuple[str, dict[str, Any]]], src: SourceSize, s: Shape, shard_size: int) -> Layout:
    """Bytes on disk of the whole set under one codec per field: fields, meta + index, tar framing."""
    fields = {f: field_bytes(f, label, spec, s) for f, (label, spec) in chosen.items()}
    meta = meta_bytes(s, src.images)
    members = [m for fb in fields.values() for m in fb.members] + [meta]
    shards = shard_sizes(sum(tar_member_bytes(m) for m in members), s.g, shard_size)
    index = index_bytes(src, s, len(shards), {f: spec for f, (_, spec) in chosen.items()})
    total = sum(shards) + index
    out = {f: fb.bytes for f, fb in fields.items()}
    out |= {"metadata": meta * s.g + index, "container": sum(shards) - s.g * sum(members), "total": total}
    estimated = [f for f, fb in fields.items() if fb.estimate] + ["metadata", "container", "total"]
    return Layout(name, {f: label for f, (label, _) in chosen.items()}, out, len(shards), estimated, total / src.train_bytes)


def parse_user_codecs(texts: dict[str, str | None]) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{"base": "jpeg:75", ...}`` -> ``{field: (text, spec)}`` for the fields given.

    Raises:
        ConfigError: an unknown codec or a bad parameter, naming the option.
    """
    out = {}
    for field_name, text in texts.items():
        if not text:
            continue
        try:
            out[field_name] = (text, parse_codec(field_name, text))
        except InferError as exc:
            raise ConfigError(f"{FLAGS[field_name]} {text!r}: {exc}") from exc
        if (field_name, out[field_name][1]["name"]) in MINOR_2_CODECS:
            raise ConfigError(f"{FLAGS[field_name]} {text!r}: a codec for sets packed by `infer import`, which distill does not "
                              "write; plan with another codec")
    return out


def preset_for(src: SourceSize) -> DistillConfig:
    """The preset ``infer distill`` starts from for this source (no --preset given)."""
    from .config import DEFAULT_PRESET, create_preset

    return create_preset({"imagenet-1k": "imagenet1k", "tiny-imagenet": "tinyimagenet"}.get(src.name, DEFAULT_PRESET.get(src.name, "cifar10")))


def default_codecs(cfg: DistillConfig) -> dict[str, tuple[str, dict[str, Any]]]:
    """The codecs ``infer distill`` would use: the writer's defaults, then the preset's."""
    specs = {**DEFAULT_CODECS, **cfg.codecs}
    return {f: (_label(spec), spec) for f, spec in specs.items()}


def _label(spec: dict[str, Any]) -> str:
    """``{"name": "jpeg", "quality": 90}`` -> ``"jpeg:90"``; zstd at the default level is left implicit."""
    extra = [str(v) for k, v in spec.items() if k not in ("name", "zstd_level", "compress_level")]
    text = ":".join([spec["name"], *extra])
    return text + (" zstd off" if "zstd_level" in spec and spec["zstd_level"] is None else "")


def _choices(user: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """The listed choices per field plus any user codec not among them."""
    out = {f: list(items) for f, items in CHOICES.items()}
    for f, (label, spec) in user.items():
        if all(_full(f, spec) != _full(f, s) for _, s in out[f]):
            out[f].append((label, spec))
    return out


def _full(field_name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A spec with its defaults filled in, for comparing specs."""
    from infer_data.codecs import create_codec

    return create_codec(field_name, spec).spec()


def make_plan(spec: str, ipc: int, m: int, *, codecs: dict[str, str | None] | None = None, image_size: int | None = None,
              shard_size: int | None = None) -> Plan:
    """Plan distilling ``spec`` at ``ipc`` with ``m`` teachers, without loading the data.

    Args:
        spec: source spec (``imagenet-1k``, ``cifar10``, ``imagefolder:PATH``, ...).
        ipc: stored-image budget per class.
        m: compensators per group (teachers).
        codecs: user codec texts per field (``{"base": "jpeg:75"}``); unset fields use the defaults.
        image_size: store images at this side (image folders are resized to it).
        shard_size: groups per shard (``infer distill --shard-size``); None or 0: distill's default.

    Raises:
        ConfigError: unknown source or codec, an ipc too small for one group, or more groups than
            the smallest class has images.
        DatasetNotFoundError: an image folder that does not exist.
    """
    if shard_size is not None and shard_size < 0:
        raise ConfigError(f"--shard-size must be a number of groups >= 1 (or 0 for the default), got {shard_size}")
    user = parse_user_codecs(codecs or {})
    src = source_size(spec, image_size=image_size)
    k = src.classes
    g = num_groups(ipc, k, m)
    if g > src.min_per_class:
        raise ConfigError(f"--ipc {ipc} needs G={g} groups but {src.spec} has only {src.min_per_class} training images "
                          f"in its smallest class (one base per class per group); lower --ipc")
    s = Shape(k, m, g, k, src.image_shape)
    fields = {f: [field_bytes(f, label, sp, s) for label, sp in items] for f, items in _choices(user).items()}
    cfg = preset_for(src)
    chosen = {**default_codecs(cfg), **user}
    size = shard_size or default_shard_size(cfg.batch_groups, k, m, src.image_shape, k)
    named = {n: {f: (label, dict(CHOICES[f])[label]) for f, label in codecs.items()} for n, codecs in LAYOUTS.items()}
    layouts = [layout_bytes(n, c, src, s, size) for n, c in (("chosen", chosen), *named.items())]
    reference = reference_layout(src, s)
    return Plan({k: v for k, v in asdict(src).items() if k != "class_names"}, ipc, k, m, g, ipc * k, stored_images(g, k, m),
                s.rows * g, size, fields, layouts, reference, ratios(src, s, ipc, layouts[0], reference))


def reference_layout(src: SourceSize, s: Shape) -> dict[str, Any]:
    """The reference code's layout: one JPEG q75 file per instance (estimate) plus fp32 labels (exact)."""
    n = s.rows * s.g
    per_value = table_for(s.chw)["file_jpeg:75"] * COMPOSITE_OVER_BASE_JPEG75
    images = round(n * math.prod(s.chw) * per_value)
    labels = n * s.nc * 4
    return {"instances": n, "image_bytes": images, "label_bytes": labels, "total": images + labels, "estimate": True}


def ratios(src: SourceSize, s: Shape, ipc: int, chosen: Layout, reference: dict[str, Any]) -> dict[str, Any]:
    """The paper's convention (budget images + one fp32 label each), and byte ratios of the chosen layout."""
    return {
        "paper": paper_ratios(ipc, s.k, s.nc, src.images, src.train_bytes),
        "stored_images_over_train_images": stored_images(s.g, s.k, s.m) / src.images,
        "chosen_bytes_over_train_bytes": chosen.ratio_to_train_bytes,
        "reference_over_chosen": reference["total"] / chosen.bytes["total"],
    }
