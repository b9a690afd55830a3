"""``distill(cfg, out_dir)``: sources + teachers + budget -> compensators, labels -> shards.

The G groups are cut into shards of a fixed number of groups and each shard into chunks of at
most ``cfg.batch_groups`` groups (:mod:`infer_distill.layout`). For each chunk the bases are
read, one compensator per teacher is optimized for all its groups in one batch, the static
labels are computed, and each group is cached in the work folder; when a shard's groups are
cached the shard is written into the work folder through :class:`infer_data.ShardWriter` and
recorded. At the end the shards are moved to their final names and the index is written last,
so an interrupted run leaves no shard under a final name.

Under ``torchrun`` each rank writes the shards ``rank, rank + world, ...``; rank 0 gathers
every shard's entry and writes ``index.json`` once all are done. Since the layout does not
depend on the number of processes, the bytes do not either.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
from collections.abc import Callable, Iterator
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
    ShardEntry,
    ShardWriter,
    __version__,
)
from infer_data.atomic import DirLock, storage_errors
from infer_data.card import card_provenance, publish_card
from infer_data.constants import INDEX_FILENAME
from infer_data.errors import ConfigError, InferError

from .bases import seed_for, select_bases
from .budget import num_groups
from .compensators import freeze, optimize_compensators
from .config import DistillConfig
from .distributed import all_gather_json, barrier, current_ranks, distributed
from .labels import static_labels
from .layout import Layout, default_shard_size
from .sources import NORMALIZATIONS, Source, create_source, normalization
from .teachers import open_teacher
from .workdir import WorkDir

logger = logging.getLogger(__name__)


@dataclass
class Progress:
    """Where a run stands; passed to the progress callback after every optimization step."""

    steps_done: int  # optimization steps done (one step advances every group of a chunk)
    steps_total: int  # steps this process's shards need: chunks * M * iterations (or chunks when M = 0)
    groups_done: int  # groups finished (cached or in a written shard)
    groups_total: int  # groups of this process's shards (G in a single process)


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
    teacher_info: list[dict[str, Any]]  # per teacher: sha256 of its weights (+ torchvision weights name, url, mean/std)
    mean: list[float]  # per-channel normalization of the teachers' input, [0, 1] units
    std: list[float]
    layout: Layout  # shards and chunks


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
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s); pick cuda:0 to "
                          f"cuda:{torch.cuda.device_count() - 1}")
    return dev


def make_plan(cfg: DistillConfig, device: str | torch.device | None = None) -> Plan:
    """Open the source, load the teachers onto ``device`` and choose the bases.

    Raises:
        ConfigError: no teacher, budget too small, a bad checkpoint, a normalization the
            teachers' weights were not trained with.
        DatasetNotFoundError: the dataset is missing.
    """
    if not cfg.teachers:
        raise ConfigError("no teacher given; pass at least one --teacher ARCH=CHECKPOINT (train one with `infer teacher train`)")
    source = create_source(cfg.dataset, "train", data_root=cfg.data_root, image_size=cfg.image_size)
    c, h, _ = source.image_shape
    k = len(source.classes)
    g = num_groups(cfg.ipc, k, cfg.m)
    opened = [open_teacher(t.arch, t.checkpoint, num_classes=k, in_channels=c, image_size=h) for t in cfg.teachers]
    infos = [info for _, info in opened]
    mean, std = run_normalization(cfg, source, infos)
    bases = select_bases(source.targets, k, g, seed=cfg.seed)
    dev = resolve_device(device)
    teachers = [freeze(net).to(dev) for net, _ in opened]
    size = cfg.shard_size or default_shard_size(cfg.batch_groups, k, cfg.m, source.image_shape, k)
    return Plan(source, teachers, k, cfg.m, g, bases, dev, infos, mean, std, Layout(g, size, cfg.batch_groups))


def run_normalization(cfg: DistillConfig, source: Source, infos: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """The run's ``(mean, std)``; teachers with torchvision weights must get the normalization they were trained with.

    Raises:
        ConfigError: a teacher whose weights carry other statistics than ``cfg.normalization``.
    """
    fixed = NORMALIZATIONS.get(cfg.normalization)
    for spec, info in zip(cfg.teachers, infos):
        if "mean" not in info or (fixed is not None and _close(fixed[0], info["mean"]) and _close(fixed[1], info["std"])):
            continue
        fits = [n for n, (m, s) in NORMALIZATIONS.items() if _close(m, info["mean"]) and _close(s, info["std"])]
        hint = f"pass --normalization {fits[0]}" if fits else "pass a checkpoint teacher instead"
        raise ConfigError(f"--teacher {spec.arch}={spec.checkpoint}: these weights expect images normalized with mean "
                          f"{info['mean']} and std {info['std']}, but this run uses --normalization {cfg.normalization}; {hint}")
    return normalization(cfg.normalization, source)


def _close(a: Any, b: Any) -> bool:
    return len(a) == len(b) and all(abs(float(x) - float(y)) < 1e-6 for x, y in zip(a, b))


def fingerprint(cfg: DistillConfig, plan: Plan) -> dict[str, Any]:
    """Everything that determines the bytes of the result."""
    config = {k: v for k, v in cfg.to_dict().items() if k not in ("card_name", "card_license")}  # card fields: no shard byte depends on them
    return {"config": config, "teacher_sha256": [t["sha256"] for t in plan.teacher_info], "source": plan.source.spec,
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
        res = optimize_compensators(plan.teachers[j], bases, classes, gens, mean=plan.mean, std=plan.std,
                                    optim=cfg.optim, augment=cfg.augment, on_step=on_step)
        comps.append(res.compensators)
        losses.append(res.losses.T)  # (B, iterations)
    comp = torch.stack(comps, 1) if comps else torch.zeros(len(groups), 0, c, h, w)  # (B, M, C, H, W), CPU
    labels = static_labels(plan.teachers, bases, comp.to(plan.device), mean=plan.mean, std=plan.std,
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
        "source": {"name": plan.source.name, "spec": plan.source.spec, "split": "train", "size": len(plan.source),
                   **({"data_root": str(Path(cfg.data_root).resolve())} if cfg.data_root else {})},
        **card_provenance(cfg.card_name, cfg.card_license),
        "source_size": {"images": len(plan.source), "bytes": len(plan.source) * int(np.prod(plan.source.image_shape)),
                        "note": "raw uint8 bytes of the source's train split at the stored image shape"},
        "teachers": [{"arch": t.arch, "checkpoint": os.path.basename(t.checkpoint), **info, "role": "compensator+label" if plan.m else "label"}
                     for t, info in zip(cfg.teachers, plan.teacher_info)],
        "bases": "meta.json source_indices index the source's train split; class k of group g is base k",
        "labels": "mean raw logits of all teachers on each un-augmented instance, row = view * K + slot",
    }


def open_writer(cfg: DistillConfig, plan: Plan, out: Path, lock: DirLock | None = None) -> ShardWriter:
    """The writer every rank writes its shards with; the holder of ``out``'s ``lock`` (rank 0) also
    clears a dead run's temporaries and refuses files of the user's at the shards' final names."""
    src = plan.source
    info = DatasetInfo(cfg.dataset_name or src.name, list(src.classes), src.image_shape, list(plan.mean), list(plan.std), source=src.spec)
    names = [t.arch for t in cfg.teachers][: plan.m]
    method = MethodInfo(plan.k, plan.m, 0, cfg.ipc, names, seed=cfg.seed, producer=f"infer_distill {__version__}")
    writer = ShardWriter(out, dataset=info, method=method, codecs=dict(cfg.codecs), provenance=provenance(cfg, plan),
                         lock=lock or False)
    if lock is not None:
        writer.check_free(writer.shard_name(s) for s in range(plan.layout.num_shards))
    return writer


def lock_out(out: Path, is_main: bool, device: torch.device) -> DirLock | None:
    """Rank 0 takes ``out``'s lock; every rank learns whether it could (so all fail together).

    Raises:
        ConfigError: another run holds the folder.
        StorageError: the folder cannot be created or written.
    """
    lock, error = None, None
    if is_main:
        try:
            with storage_errors(out):
                out.mkdir(parents=True, exist_ok=True)
            lock = DirLock(out).acquire()
        except InferError as exc:
            error = str(exc)
    errors = [e for e in all_gather_json(error, device) if e]
    if errors:
        if lock is not None:
            lock.release()
        raise ConfigError(errors[0])
    return lock



def open_work(out: Path, fp: dict[str, Any], is_main: bool, device: torch.device) -> WorkDir:
    """Rank 0 creates (or checks) the work folder before the other ranks open it; all fail together.

    Opened at once, a rank could find the folder while rank 0's ``run.json`` is still a temporary
    file in it, and refuse it as a folder that is not a work folder.

    Raises:
        ConfigError: the folder belongs to another run or is not a work folder (on every rank).
        StorageError: the folder cannot be written (rank 0; the others raise ConfigError).
    """
    work, failure = None, None
    if is_main:
        try:
            work = WorkDir(out, fp)
        except InferError as exc:
            failure = exc
    errors = [e for e in all_gather_json(None if failure is None else str(failure), device) if e]
    if failure is not None:
        raise failure
    if errors:
        raise ConfigError(errors[0])
    return work if work is not None else WorkDir(out, fp)


def _records(plan: Plan, work: WorkDir, writer: ShardWriter, groups: range) -> Iterator[GroupRecord]:
    """The cached groups ``groups`` as records, bases read again from the source."""
    for g in groups:
        a = work.load(g)
        bases = plan.source.images(torch.from_numpy(a["source_indices"])).numpy()  # (K, C, H, W) uint8
        last = [round(float(v), 5) for v in a["losses"][:, -1]] if a["losses"].size else []
        yield GroupRecord(bases, a["class_ids"], a["source_indices"], a["compensators"], list(writer.method.teachers),
                          a["labels"], extra={"final_loss": last})


class _Tracker:
    """Progress of one process over its shards; reports through ``progress`` (rank 0 only)."""

    def __init__(self, progress: ProgressFn | None, per_chunk: int, chunks: int, groups: int) -> None:
        self.progress, self.per_chunk = progress, per_chunk
        self.state = Progress(0, per_chunk * chunks, 0, groups)

    def tick(self, _: int = 0) -> None:
        """One optimization step done."""
        self.state.steps_done += 1
        self.report()

    def chunk_done(self, groups: int, steps_before: int) -> None:
        """A chunk of ``groups`` groups finished (computed or found cached)."""
        self.state.steps_done, self.state.groups_done = steps_before + self.per_chunk, self.state.groups_done + groups

    def report(self) -> None:
        """Pass the current state to the callback, if any."""
        if self.progress is not None:
            self.progress(self.state)


def run_shards(cfg: DistillConfig, plan: Plan, work: WorkDir, writer: ShardWriter, shards: list[int],
               progress: ProgressFn | None) -> list[ShardEntry]:
    """Compute, write and record ``shards`` (skipping finished shards and cached groups); their entries."""
    layout = plan.layout
    finished = {s: work.finished_shard(s, work.path / writer.shard_name(s), layout.shard_groups(s)) for s in shards}
    tracker = _Tracker(progress, plan.m * cfg.optim.iterations or 1, sum(len(layout.chunks(s)) for s in shards),
                       sum(len(layout.shard_groups(s)) for s in shards))
    todo = []
    for s in shards:
        for chunk in layout.chunks(s):
            if finished[s] is not None or all(work.has(g) for g in chunk):
                tracker.chunk_done(len(chunk), tracker.state.steps_done)
            else:
                todo.append(chunk)
    logger.info("distilling shards %s of %s: K=%d M=%d G=%d (%d groups done)", shards, plan.source.spec, plan.k, plan.m,
                plan.g, tracker.state.groups_done)
    tracker.report()
    entries = []
    for s in shards:
        entry = finished[s]
        if entry is None:
            entry = _compute_shard(cfg, plan, work, writer, s, [ch for ch in layout.chunks(s) if ch in todo], tracker)
        else:
            logger.info("%s is already written; kept", entry.name)
        entries.append(entry)
    return entries


def _compute_shard(cfg: DistillConfig, plan: Plan, work: WorkDir, writer: ShardWriter, shard: int, chunks: list[list[int]],
                   tracker: _Tracker) -> ShardEntry:
    for chunk in chunks:
        before = tracker.state.steps_done
        for g, arrays in zip(chunk, compute_chunk(cfg, plan, chunk, on_step=tracker.tick)):
            work.save(g, arrays)
        tracker.chunk_done(len(chunk), before)
        tracker.report()
    groups = plan.layout.shard_groups(shard)
    entry = writer.write_shard(shard, groups.start, _records(plan, work, writer, groups), folder=work.path)
    work.save_shard(shard, entry)
    return entry


def gather_index(writer: ShardWriter, work: WorkDir, entries: list[ShardEntry], device: torch.device) -> ShardWriter:
    """Every rank's shard entries, listed in ``writer`` in shard order (all ranks get the same).

    Raises:
        ConfigError: a shard this process cannot see (an output folder not shared by the nodes).
    """
    parts = all_gather_json([dataclasses.asdict(e) for e in entries], device)
    for entry in sorted((ShardEntry(**d) for part in parts for d in part), key=lambda e: e.first_group):
        path = work.path / entry.name
        if not path.is_file():
            raise ConfigError(f"{path}: written by another process but not visible here; "
                              "with several nodes --out must be a folder every node shares")
        writer.add_shard(entry, path)
    return writer


def distill(cfg: DistillConfig, out_dir: str | os.PathLike[str], *, progress: ProgressFn | None = None,
            device: str | torch.device | None = None) -> DatasetIndex:
    """Produce an INFER-distilled dataset in ``out_dir`` (resumable; torchrun splits the shards).

    Under torchrun (``WORLD_SIZE`` > 1) every rank calls this with the same arguments: the
    process group is joined here (gloo on CPU, NCCL on ``cuda:LOCAL_RANK``), rank r writes
    shards r, r + world, ... into the work folder; once every rank is done, rank 0 moves them
    to their final names and writes the index. The bytes are
    those of a single-process run, and a run interrupted with any number of processes resumes
    with any other.

    Args:
        cfg: the whole configuration, teachers included.
        out_dir: output folder; an interrupted run's work folder inside it is resumed. With
            several nodes it must be a folder they all share.
        progress: called with a :class:`Progress` after every step and every finished chunk
            (on rank 0 only, over rank 0's shards).
        device: where teachers run and compensators are optimized (default: CUDA when
            available). Resume on the same kind of device: results differ in the last bits
            between devices.

    Returns:
        The written index (every rank returns it).

    Raises:
        ConfigError: ``out_dir`` already holds a dataset, another run is writing to it, a file of
            the user's sits at a shard's final name or in the work folder, bad teachers or
            budget, or a work folder of a run with other arguments.
        StorageError: the disk is full, read-only or not writable (rerun to resume).
        DatasetNotFoundError: missing source data.
    """
    out = Path(out_dir)
    if (out / INDEX_FILENAME).exists():
        raise ConfigError(f"{out} already holds a distilled dataset ({INDEX_FILENAME}); choose another --out or delete it")
    with distributed(str(resolve_device(device))) as dev:
        ranks = current_ranks()
        lock = lock_out(out, ranks.is_main, dev)  # held by rank 0 until the index is written or the run fails
        try:
            plan = make_plan(cfg, dev)
            work = open_work(out, fingerprint(cfg, plan), ranks.is_main, dev)
            writer = open_writer(cfg, plan, out, lock)
            barrier()  # rank 0 has cleared stale temporaries before any rank writes
            shards = plan.layout.shards_of(ranks.rank, ranks.world)
            if ranks.is_main and ranks.world > plan.layout.num_shards:
                logger.warning("%d processes but %d shard(s): %d process(es) have nothing to do; a smaller --shard-size "
                               "cuts more shards", ranks.world, plan.layout.num_shards, ranks.world - plan.layout.num_shards)
            entries = run_shards(cfg, plan, work, writer, shards, progress if ranks.is_main else None)
            gather_index(writer, work, entries, dev)
            barrier()  # every rank has checked every shard in the work folder before rank 0 moves them out
            if not ranks.is_main:
                return writer.index()
            index = writer.close()
            publish_card(out)  # after index.json: the card describes the finished set
            work.remove()
        finally:
            if lock is not None:
                lock.release()
    return index
