"""``distill(cfg, out_dir)``: sources + teachers + budget -> compensators, labels -> shards.

Groups are processed in fixed chunks of ``cfg.batch_groups``; each chunk's bases are read, one
compensator per teacher is optimized for all its groups in one batch, the static labels are
computed, and each group is cached in the work folder. When every group is cached, the shards
are written from the cache through :class:`infer_data.ShardWriter` with full provenance.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from infer_data import (
    DatasetIndex,
    DatasetInfo,
    GroupRecord,
    MethodInfo,
    ShardWriter,
    __version__,
)
from infer_data.constants import INDEX_FILENAME
from infer_data.errors import ConfigError

from .bases import seed_for, select_bases
from .budget import num_groups
from .compensators import freeze, optimize_compensators
from .config import DistillConfig
from .labels import static_labels
from .sources import Source, create_source
from .teachers import open_teacher
from .workdir import WorkDir

logger = logging.getLogger(__name__)



@dataclass
class Progress:
    """Where a run stands; passed to the progress callback after every optimization step."""

    steps_done: int  # optimization steps done (one step advances every group of a chunk)
    steps_total: int  # steps the whole run needs: chunks * M * iterations (or chunks when M = 0)
    groups_done: int  # groups finished and cached
    groups_total: int  # G


ProgressFn = Callable[[Progress], None]


@dataclass
class Plan:
    """What a run will produce, known before any optimization."""

    source: Source
    teachers: list[nn.Module]
    k: int
    m: int
    g: int
    bases: torch.Tensor  # int64 (G, K) source indices
    device: torch.device  # where teachers run and compensators are optimized
    teacher_info: list[dict[str, str]]  # per teacher: sha256 of its weights (+ torchvision weights name and url)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU.

    Raises:
        ConfigError: an unknown device string, or CUDA asked for where there is none.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available here; use --device cpu")
    return dev


def make_plan(cfg: DistillConfig, device: str | torch.device | None = None) -> Plan:
    """Open the source, load the teachers onto ``device`` and choose the bases.

    Raises:
        ConfigError: no teacher, budget too small, a bad checkpoint.
        DatasetNotFoundError: the dataset is missing.
    """
    if not cfg.teachers:
        raise ConfigError("no teacher given; pass at least one --teacher ARCH=CHECKPOINT (train one with `infer teacher train`)")
    source = create_source(cfg.dataset, "train", data_root=cfg.data_root, image_size=cfg.image_size)
    c, h, _ = source.image_shape
    k = len(source.classes)
    g = num_groups(cfg.ipc, k, cfg.m)
    opened = [open_teacher(t.arch, t.checkpoint, num_classes=k, in_channels=c, image_size=h) for t in cfg.teachers]
    bases = select_bases(source.targets, k, g, seed=cfg.seed)
    dev = resolve_device(device)
    teachers = [freeze(net).to(dev) for net, _ in opened]
    return Plan(source, teachers, k, cfg.m, g, bases, dev, [info for _, info in opened])


def fingerprint(cfg: DistillConfig, plan: Plan) -> dict[str, Any]:
    """Everything that determines the bytes of the result."""
    return {"config": cfg.to_dict(), "teacher_sha256": [t["sha256"] for t in plan.teacher_info], "source": plan.source.spec,
            "producer": __version__, "torch": torch.__version__, "device": plan.device.type}


def compute_chunk(cfg: DistillConfig, plan: Plan, groups: list[int], on_step: Callable[[int], None] | None = None) -> list[dict[str, np.ndarray]]:
    """Optimize and label the groups ``groups`` together; one array dict per group.

    ``on_step`` is called after every optimization step of every teacher.
    """
    k, (c, h, w) = plan.k, plan.source.image_shape
    idx = plan.bases[groups]  # (B, K)
    bases = plan.source.images(idx.flatten()).view(len(groups), k, c, h, w).to(plan.device)  # (B, K, C, H, W) uint8
    classes = torch.arange(k, device=plan.device).expand(len(groups), k)  # (B, K)
    comps, losses = [], []
    for j in range(plan.m):
        gens = [torch.Generator().manual_seed(seed_for(cfg.seed, g, j)) for g in groups]
        res = optimize_compensators(plan.teachers[j], bases, classes, gens, mean=plan.source.mean, std=plan.source.std,
                                    optim=cfg.optim, augment=cfg.augment, on_step=on_step)
        comps.append(res.compensators)
        losses.append(res.losses.T)  # (B, iterations)
    comp = torch.stack(comps, 1) if comps else torch.zeros(len(groups), 0, c, h, w)  # (B, M, C, H, W), CPU
    labels = static_labels(plan.teachers, bases, comp.to(plan.device), mean=plan.source.mean, std=plan.source.std,
                           batch=cfg.label_batch).cpu()
    loss = torch.stack(losses, 1) if losses else torch.zeros(len(groups), 0, cfg.optim.iterations)  # (B, M, iterations)
    return [
        {"class_ids": np.arange(k, dtype=np.int64), "compensators": comp[i].numpy().astype(np.float32),
         "labels": labels[i].numpy().astype(np.float32), "losses": loss[i].numpy().astype(np.float32),
         "source_indices": idx[i].numpy().astype(np.int64)}
        for i in range(len(groups))
    ]


def provenance(cfg: DistillConfig, plan: Plan) -> dict[str, Any]:
    """The provenance block of index.json."""
    import torchvision

    return {
        "producer": f"infer_distill {__version__}",
        "software": {"torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "source": {"name": plan.source.name, "spec": plan.source.spec, "split": "train", "size": len(plan.source)},
        "source_size": {"images": len(plan.source), "bytes": len(plan.source) * int(np.prod(plan.source.image_shape)),
                        "note": "raw uint8 bytes of the source's train split at the stored image shape"},
        "teachers": [{"arch": t.arch, "checkpoint": os.path.basename(t.checkpoint), **info, "role": "compensator+label" if plan.m else "label"}
                     for t, info in zip(cfg.teachers, plan.teacher_info)],
        "bases": "meta.json source_indices index the source's train split; class k of group g is base k",
        "labels": "mean raw logits of all teachers on each un-augmented instance, row = view * K + slot",
    }


def write_shards(cfg: DistillConfig, plan: Plan, work: WorkDir, out: Path) -> DatasetIndex:
    """Write every cached group through ShardWriter; returns the index."""
    src = plan.source
    info = DatasetInfo(src.name, list(src.classes), src.image_shape, list(src.mean), list(src.std), source=src.spec)
    names = [t.arch for t in cfg.teachers][: plan.m]
    method = MethodInfo(plan.k, plan.m, 0, cfg.ipc, names, seed=cfg.seed, producer=f"infer_distill {__version__}")
    with ShardWriter(out, dataset=info, method=method, codecs=dict(cfg.codecs), provenance=provenance(cfg, plan)) as writer:
        for g in range(plan.g):
            a = work.load(g)
            bases = src.images(torch.from_numpy(a["source_indices"])).numpy()  # (K, C, H, W) uint8
            last = [round(float(v), 5) for v in a["losses"][:, -1]] if a["losses"].size else []
            writer.write_group(GroupRecord(bases, a["class_ids"], a["source_indices"], a["compensators"], names,
                                           a["labels"], extra={"final_loss": last}))
    return writer.index()


def distill(cfg: DistillConfig, out_dir: str | os.PathLike[str], *, progress: ProgressFn | None = None,
            device: str | torch.device | None = None) -> DatasetIndex:
    """Produce an INFER-distilled dataset in ``out_dir`` (resumable).

    Args:
        cfg: the whole configuration, teachers included.
        out_dir: output folder; an interrupted run's work folder inside it is resumed.
        progress: called with a :class:`Progress` after every step and every finished chunk.
        device: where teachers run and compensators are optimized (default: CUDA when
            available). Resume on the same kind of device: results differ in the last bits
            between devices.

    Returns:
        The written index.

    Raises:
        ConfigError: ``out_dir`` already holds a dataset, bad teachers or budget, or a work folder
            of a run with other arguments.
        DatasetNotFoundError: missing source data.
    """
    out = Path(out_dir)
    if (out / INDEX_FILENAME).exists():
        raise ConfigError(f"{out} already holds a distilled dataset ({INDEX_FILENAME}); choose another --out or delete it")
    plan = make_plan(cfg, device)
    work = WorkDir(out, fingerprint(cfg, plan))
    chunks = [list(range(s, min(s + cfg.batch_groups, plan.g))) for s in range(0, plan.g, cfg.batch_groups)]
    per_chunk = plan.m * cfg.optim.iterations or 1
    cached = [all(work.has(g) for g in ch) for ch in chunks]
    state = Progress(per_chunk * sum(cached), per_chunk * len(chunks), sum(len(ch) for ch, c in zip(chunks, cached) if c), plan.g)
    logger.info("distilling %s: K=%d M=%d G=%d (%d groups cached)", plan.source.spec, plan.k, plan.m, plan.g, state.groups_done)

    def tick(_: int) -> None:
        state.steps_done += 1
        if progress is not None:
            progress(state)

    if progress is not None:
        progress(state)
    for chunk, is_cached in zip(chunks, cached):
        if is_cached:
            continue
        start = state.steps_done
        for g, arrays in zip(chunk, compute_chunk(cfg, plan, chunk, on_step=tick)):
            work.save(g, arrays)
        state.steps_done, state.groups_done = start + per_chunk, state.groups_done + len(chunk)
        if progress is not None:
            progress(state)
    index = write_shards(cfg, plan, work, out)
    work.remove()
    return index
