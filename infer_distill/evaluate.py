"""Evaluate a distilled dataset: student recipes (presets), the run entry point, torchrun support.

``evaluate(root, ...)`` opens the distilled set, finds the real test split (by default the one
of the dataset named in the index), loads teachers for dynamic labels, and trains a student with
:func:`infer_distill.train_student.train_student`. Under ``torchrun`` (``WORLD_SIZE`` > 1) it
joins the process group itself and trains with DistributedDataParallel, so
``torchrun --nproc_per_node 2 -m infer_cli.evaluate ROOT ...`` needs nothing else.

Recipes follow the paper's Table 5 (DESIGN section 2): static-label epochs, and the shorter
dynamic-label schedules used when ``labels="dynamic"`` and no epoch count is given.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from infer_data import InferDataset
from infer_data.errors import ConfigError
from infer_data.index import read_index
from infer_data.registry import Registry

from .distributed import distributed
from .train_student import (
    EvalResult,
    EvalSource,
    StudentConfig,
    ensemble_logits,
    kd_loss,
    train_student,
)

__all__ = [
    "PRESETS", "EvalResult", "Recipe", "StudentConfig", "config_for", "default_preset", "distributed", "ensemble_logits", "evaluate", "kd_loss",
    "list_presets", "load_teachers", "make_config", "parse_teacher_spec", "source_spec_of", "train_student",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """A preset: the static-label config and the epoch count used with dynamic labels."""

    config: StudentConfig
    dynamic_epochs: int  # epochs when labels="dynamic" and no epoch count is given (paper Table 5)
    note: str = ""  # where the numbers come from


PRESETS: Registry[Recipe] = Registry("student recipe")
PRESETS.add("cifar", Recipe(StudentConfig(epochs=400, batch_size=64, optimizer="adamw", lr=1e-3, weight_decay=0.01),
                            80, "CIFAR-10/100, paper Table 5"))
PRESETS.add("tinyimagenet", Recipe(StudentConfig(epochs=200, batch_size=64, optimizer="sgd", lr=0.2, weight_decay=1e-4,
                                                 momentum=0.9), 50, "Tiny-ImageNet, paper Table 5"))
PRESETS.add("imagenet", Recipe(StudentConfig(epochs=300, batch_size=32, optimizer="adamw", lr=1e-3, weight_decay=0.01,
                                             eval_every=10), 75, "ImageNet-1k, paper Table 5"))
PRESETS.add("embedded", Recipe(StudentConfig(arch="convnet", epochs=30, batch_size=64, optimizer="adamw", lr=3e-3,
                                             weight_decay=0.01, temperature=4.0, eval_every=5), 30,
                               "fast CPU recipe for the embedded Fashion-MNIST subset (minutes on a laptop)"))

# dataset name recorded in the index -> the preset that fits it
_PRESET_FOR = {"cifar10": "cifar", "cifar100": "cifar", "tinyimagenet": "tinyimagenet", "imagenet1k": "imagenet",
               "imagenet": "imagenet", "embedded": "embedded"}


def list_presets(pattern: str = "*") -> list[str]:
    """Sorted preset names."""
    return PRESETS.list(pattern)


def default_preset(dataset_name: str, image_size: int) -> str:
    """The preset for a dataset name from the index: its own, else by image size.

    Example:
        >>> default_preset("cifar100", 32), default_preset("embedded", 28), default_preset("mine", 224)
        ('cifar', 'embedded', 'imagenet')
    """
    if dataset_name in _PRESET_FOR:
        return _PRESET_FOR[dataset_name]
    return "cifar" if image_size <= 32 else "tinyimagenet" if image_size <= 64 else "imagenet"


MODES = ("default", "official")

# what the official validation scripts do differently (decision 0020): MixUp Beta(0.8, 0.8), fp32,
# a per-epoch cosine, and a test every 10 epochs whose best is what the paper reports
OFFICIAL = {"mixup_beta": 0.8, "amp": False, "schedule": "cosine_epoch", "paper_every": 10}


def make_config(preset: str, *, mode: str = "default", m: int | None = None, **overrides: Any) -> StudentConfig:
    """The preset's config (in ``mode``) with ``overrides`` (None values are ignored) applied.

    With ``labels="dynamic"`` and no ``epochs`` override, the preset's dynamic-label epochs apply;
    in ``mode="official"`` they are the static epochs // (M + 1) when ``m`` (compensators per group) is given,
    the official rule (400 // 5 = 80 on CIFAR with M = 4).

    Raises:
        RegistryError: unknown preset.
        ConfigError: an unknown mode, or an unknown or invalid field.
    """
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r} is not known; choose one of {', '.join(MODES)}")
    recipe = PRESETS.get(preset)
    base = recipe.config.to_dict() | (OFFICIAL if mode == "official" else {})
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("labels") == "dynamic" and "epochs" not in given:
        given["epochs"] = recipe.dynamic_epochs if mode != "official" or m is None else max(1, recipe.config.epochs // (m + 1))
    return StudentConfig.from_dict(base | given)


def parse_teacher_spec(spec: str) -> tuple[str, Path]:
    """``"ARCH=CHECKPOINT"`` -> (arch, path).

    Raises:
        ConfigError: no ``=`` or an empty side.
    """
    arch, sep, path = spec.partition("=")
    if not sep or not arch or not path:
        raise ConfigError(f"--teacher {spec!r}: expected ARCH=CHECKPOINT, e.g. resnet18=teachers/resnet18.pt")
    return arch, Path(path)


def load_teachers(specs: Sequence[str], dataset: InferDataset) -> list[nn.Module]:
    """Frozen teachers from ``ARCH=CHECKPOINT`` specs, sized for ``dataset``.

    Raises:
        ConfigError, RegistryError: bad spec, unknown arch, missing or unfitting checkpoint.
    """
    from .teachers import load_teacher

    c, h, _ = dataset.index.dataset.image_shape
    nc = dataset.index.dataset.num_classes
    return [load_teacher(arch, path, num_classes=nc, in_channels=c, image_size=h)
            for arch, path in map(parse_teacher_spec, specs)]


def source_spec_of(dataset: InferDataset) -> str:
    """The source spec whose test split belongs to ``dataset``: the provenance's, else the index's name."""
    src = dataset.index.provenance.get("source")
    if isinstance(src, dict) and isinstance(src.get("spec"), str) and src["spec"]:
        return str(src["spec"])
    return dataset.index.dataset.name


def data_root_of(dataset: InferDataset) -> str | None:
    """The absolute ``--data-root`` the producer recorded (provenance ``source.data_root``), if any."""
    src = dataset.index.provenance.get("source")
    root = src.get("data_root") if isinstance(src, dict) else None
    return root if isinstance(root, str) and root else None


def _open_test_source(spec: str, data_root: str | None, image_size: int) -> EvalSource:
    from .sources import create_source

    return create_source(spec, "test", data_root=data_root, image_size=image_size)  # type: ignore[no-any-return]


def evaluate(
    root: str | os.PathLike[str],
    config: StudentConfig,
    *,
    test_data: str | None = None,
    teachers: Sequence[str] = (),
    device: str | None = None,
    data_root: str | None = None,
    progress: bool = True,
) -> EvalResult:
    """Train a student on the distilled set at ``root`` and report test top-1.

    Args:
        root: folder with ``index.json`` and shards.
        config: the recipe (see :func:`make_config`).
        test_data: source spec of the test split; default from the index (see :func:`source_spec_of`).
        teachers: ``ARCH=CHECKPOINT`` specs for ``labels="dynamic"``.
        device: "cpu", "cuda", "cuda:1", or "auto"/None for CUDA when available. Under torchrun, each rank
            uses ``cuda:LOCAL_RANK``.
        data_root: where sources look for their files.
        progress: progress bar on rank 0.

    Raises:
        DatasetNotFoundError: no dataset at ``root`` or no test data.
        ConfigError, RegistryError: invalid options, teachers or sources, a CUDA device this
            machine lacks, or static labels asked of a set stored without them.
    """
    from .pipeline import resolve_device
    from .teachers import TEACHERS

    TEACHERS.get(config.arch)  # an unknown student arch fails before any data is read
    dev_name = str(resolve_device(device))  # "auto"/None: CUDA when available; a missing GPU is a one-line error
    dataset = InferDataset(root, target="class")  # the loader's targets follow config.labels (stored logits or classes)
    if config.labels == "static" and not dataset.has_labels:
        raise ConfigError(f"--labels static: {dataset.root} stores no soft labels (label codec 'none'); evaluate it with "
                          "--labels dynamic --teacher ARCH=CHECKPOINT")
    if config.labels == "dynamic" and not teachers:
        raise ConfigError("labels='dynamic' needs teacher networks to relabel each batch; pass --teacher ARCH=CHECKPOINT (one or more)")
    spec = test_data or source_spec_of(dataset)
    source = _open_test_source(spec, data_root or data_root_of(dataset), dataset.index.dataset.image_shape[1])
    nets = load_teachers(teachers, dataset) if config.labels == "dynamic" else []
    with distributed(dev_name) as dev:
        result = train_student(dataset, source, config, teachers=nets, device=dev, progress=progress)
    result.config |= {"root": str(root), "test_data": spec, "teachers": list(teachers)}
    return result


def config_for(root: str | os.PathLike[str], preset: str | None = None, *, mode: str = "default", **overrides: Any) -> StudentConfig:
    """:func:`make_config` with the preset defaulting to the one that fits the dataset at ``root`` (and its M).

    Raises:
        DatasetNotFoundError: no index at ``root``.
        RegistryError, ConfigError: unknown preset or invalid overrides.
    """
    index = read_index(root)
    info = index.dataset
    return make_config(preset or default_preset(info.name, info.image_shape[1]), mode=mode, m=index.method.m, **overrides)
