"""Train a student network on a distilled set and measure it on the real test split.

INFER's evaluation protocol (DESIGN section 2; paper Table 5): per batch the dataset's usual
augmentation, then MixUp without relabeling (lambda' = max(lambda, 1 - lambda)), loss
KL(softmax(label / T) || softmax(student / T)). Static labels are the stored ensemble logits;
dynamic labels (INFER+Dyn) rerun the frozen teacher ensemble on every augmented, mixed batch.
The data side is :class:`infer_data.loader.DeviceLoader`; under ``torch.distributed`` each rank
trains on its share of every epoch with DistributedDataParallel.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from infer_data import InferDataset
from infer_data.errors import ConfigError
from infer_data.loader import DeviceLoader, LoaderConfig

logger = logging.getLogger(__name__)

LABEL_MODES = ("static", "dynamic")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "cosine_epoch", "constant")


@dataclass(frozen=True)
class StudentConfig:
    """A student-training recipe; presets live in :data:`infer_distill.evaluate.PRESETS`."""

    arch: str = "resnet18"  # student architecture, any name of infer_distill.teachers.list_teachers()
    labels: str = "static"  # "static": stored logits; "dynamic": teacher ensemble relabels each batch
    epochs: int = 400  # passes over the distilled set
    batch_size: int = 64  # instances per step and rank
    optimizer: str = "adamw"  # "adamw" | "sgd" (momentum, no nesterov)
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.01  # decoupled (AdamW) or L2 (SGD)
    momentum: float = 0.9  # SGD momentum
    schedule: str = "cosine"  # per-step cosine decay to 0; "cosine_epoch": stepped once per epoch (official); "constant"
    warmup_epochs: float = 0.0  # linear warmup before the schedule, in epochs
    temperature: float = 30.0  # T of the KL loss (30 in the reference code)
    mixup_beta: float = 1.0  # Beta(beta, beta) MixUp; 0 turns MixUp off
    augment: str = "auto"  # see infer_data.augment: "auto" = crop+flip <= 64 px, resized crop+flip above
    padding: int = 4  # zero border of the random crop, pixels
    eval_every: int = 1  # evaluate on the test split every this many epochs (and after the last)
    paper_every: int = 0  # > 0: also test at epochs 1, 1 + N, 1 + 2N, ... and the last; paper_top1 = best of those (official: 10)
    eval_batch_size: int = 500  # test images per forward pass
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU); False = fp32 (official)
    channels_last: bool = True  # channels_last memory format on CUDA (ignored on CPU)
    seed: int = 0  # student init, permutations, augmentation, MixUp

    def __post_init__(self) -> None:
        for name, value, choices in (("labels", self.labels, LABEL_MODES), ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("schedule", self.schedule, SCHEDULES)):
            if value not in choices:
                raise ConfigError(f"{name}={value!r} is not valid; choose one of {', '.join(map(repr, choices))}")
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if self.paper_every < 0:
            raise ConfigError(f"paper_every={self.paper_every} must be >= 0 (0 = no paper_top1)")
        if self.lr <= 0 or self.temperature <= 0:
            raise ConfigError(f"lr={self.lr} and temperature={self.temperature} must be > 0")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ConfigError(f"weight_decay={self.weight_decay} and warmup_epochs={self.warmup_epochs} must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> StudentConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: an unknown field.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise ConfigError(f"unknown student option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**obj)


@dataclass
class EvalResult:
    """What a student run measured; ``top1`` is the final epoch's accuracy."""

    top1: float  # final-epoch top-1 on the test split, percent
    best_top1: float  # best evaluated epoch's top-1, percent (optimistic; labelled as such)
    best_epoch: int  # 1-based epoch of best_top1
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: epoch, loss, lr, [top1]
    config: dict[str, Any] = field(default_factory=dict)  # the StudentConfig and run facts
    seconds: float = 0.0  # wall time of the training loop, evaluation included
    paper_top1: float | None = None  # best top-1 at epochs 1, 1 + paper_every, ... and the last, as the paper reports; None if off

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``top1``, ``best_top1`` (best epoch, optimistic), ``paper_top1``, history and config."""
        return asdict(self)


class EvalSource(Protocol):
    """The part of an ``infer_distill.sources.Source`` the evaluation reads."""

    classes: list[str]
    targets: torch.Tensor  # int64 (N,)

    def __len__(self) -> int: ...

    def images(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor: ...  # uint8 (B, C, H, W)


def kd_loss(student_logits: torch.Tensor, target_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(target / T) || softmax(student / T)), mean over the batch (reference: no T^2 factor).

    Args:
        student_logits, target_logits: float (B, NC).
    """
    log_p = F.log_softmax(student_logits.float() / temperature, dim=1)  # (B, NC)
    q = F.softmax(target_logits.float() / temperature, dim=1)  # (B, NC)
    return F.kl_div(log_p, q, reduction="batchmean")


@torch.no_grad()
def ensemble_logits(teachers: Sequence[nn.Module], images: torch.Tensor) -> torch.Tensor:
    """Mean raw logits of the teachers on ``images`` (B, C, H, W): float32 (B, NC)."""
    return torch.stack([t(images).float() for t in teachers]).mean(0)


def _autocast(device: torch.device, enabled: bool) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _build_student(dataset: InferDataset, config: StudentConfig, device: torch.device) -> nn.Module:
    from .teachers import create_teacher

    c, h, _ = dataset.index.dataset.image_shape
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG state
        torch.default_generator.manual_seed(config.seed)
        model = create_teacher(config.arch, dataset.index.dataset.num_classes, in_channels=c, image_size=h)
    return model.to(device)


def _optimizer(model: nn.Module, config: StudentConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _lr_factor(step: int, total: int, warmup: int, schedule: str, per_epoch: int = 1) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based) of ``total``; ``per_epoch`` steps make an epoch."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine_epoch":  # constant within an epoch, as a per-epoch CosineAnnealingLR
        return 0.5 * (1.0 + math.cos(math.pi * ((step - warmup) // per_epoch) / max(1, (total - warmup) // per_epoch)))
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def paper_epoch(epoch: int, every: int, epochs: int) -> bool:
    """Whether 1-based ``epoch`` is one the official code tests at (1, 1 + every, ..., and the last).

    Example:
        >>> [e for e in range(1, 26) if paper_epoch(e, 10, 25)]
        [1, 11, 21, 25]
    """
    return every > 0 and ((epoch - 1) % every == 0 or epoch == epochs)


def _check_compatible(dataset: InferDataset, test_source: EvalSource, teachers: Sequence[nn.Module] | None,
                      config: StudentConfig) -> None:
    nc = dataset.index.dataset.num_classes
    if len(test_source.classes) != nc:
        raise ConfigError(f"test data has {len(test_source.classes)} classes but the distilled set {dataset.root} has {nc}; "
                          "pass the test split of the dataset it was distilled from")
    c = dataset.index.dataset.image_shape[0]
    got = int(test_source.images(torch.zeros(1, dtype=torch.int64)).shape[1]) if len(test_source) else c
    if got != c:
        raise ConfigError(f"test data images have {got} channel(s) but the distilled set {dataset.root} has {c}; "
                          "pass the test split of the dataset it was distilled from")
    if config.labels == "dynamic" and not teachers:
        raise ConfigError("labels='dynamic' needs teacher networks to relabel each batch; pass --teacher ARCH=CHECKPOINT (one or more)")
    if config.labels == "static" and not dataset.has_labels:
        raise ConfigError(f"{dataset.root} stores no soft labels; use labels='dynamic' with --teacher ARCH=CHECKPOINT")


def train_student(
    dataset: InferDataset,
    test_source: EvalSource,
    config: StudentConfig,
    *,
    teachers: Sequence[nn.Module] | None = None,
    student: nn.Module | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> EvalResult:
    """Train a student on ``dataset`` and report top-1 on ``test_source``.

    Args:
        dataset: the distilled set; its mean/std also normalize the test images.
        test_source: the real test split (``infer_distill.sources.create_source(spec, "test")``).
        config: the recipe.
        teachers: frozen networks for ``labels="dynamic"`` (set to eval mode, never updated).
        student: a network to train instead of building ``config.arch`` (trained in place).
        device: default CUDA when available, else CPU.
        progress: show a progress bar (rank 0 only).

    Returns:
        The final-epoch ``top1``, the best epoch's ``best_top1``, per-epoch history and config.

    Raises:
        ConfigError: mismatched classes, dynamic labels without teachers, static labels
            without stored labels.
        RegistryError: unknown ``config.arch``.
    """
    _check_compatible(dataset, test_source, teachers, config)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rank, world = _rank_world()
    loader = DeviceLoader(dataset, LoaderConfig(
        batch_size=config.batch_size, augment=config.augment, padding=config.padding, normalize=True,
        mixup_beta=config.mixup_beta, targets="soft" if config.labels == "static" else "class", seed=config.seed,
        channels_last=config.channels_last and dev.type == "cuda"), device=dev, rank=rank, world_size=world)
    model = student.to(dev) if student is not None else _build_student(dataset, config, dev)
    frozen = [t.to(dev).eval().requires_grad_(False) for t in teachers or []] if config.labels == "dynamic" else []
    return _run(model, loader, test_source, config, frozen, progress=progress and rank == 0)


# -- the loop ----------------------------------------------------------------------------------


def _wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    if _rank_world()[1] == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type != "cuda":
        return DistributedDataParallel(model)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return DistributedDataParallel(model, device_ids=[index])


def _run(student: nn.Module, loader: DeviceLoader, test_source: EvalSource, config: StudentConfig,
         teachers: Sequence[nn.Module], *, progress: bool) -> EvalResult:
    dev = loader.device
    cuda_fmt = config.channels_last and dev.type == "cuda"
    if cuda_fmt:
        student = student.to(memory_format=torch.channels_last)
        teachers = [t.to(memory_format=torch.channels_last) for t in teachers]
    model = _wrap_ddp(student, dev)
    opt = _optimizer(model, config)
    total, warmup = config.epochs * len(loader), round(config.warmup_epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, total, warmup, config.schedule, len(loader)))
    test = EvalSplit(test_source, loader.data.mean, loader.data.std, loader.image_size, dev)
    history: list[dict[str, float]] = []
    best, best_epoch, top1, paper = -1.0, 0, 0.0, None
    bar = _progress(config.epochs, progress)
    start = time.perf_counter()
    for epoch in range(config.epochs):
        loader.set_epoch(epoch)
        loss = _train_epoch(model, loader, opt, sched, teachers, config)
        row = {"epoch": epoch + 1, "loss": loss, "lr": opt.param_groups[0]["lr"]}
        at_paper = paper_epoch(epoch + 1, config.paper_every, config.epochs)
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs or at_paper:
            _sync_buffers(student)
            top1 = test.top1(student, config)
            row["top1"] = top1
            if top1 > best:
                best, best_epoch = top1, epoch + 1
            if at_paper:
                paper = max(top1, paper if paper is not None else top1)
            logger.info("epoch %d/%d loss %.4f top1 %.2f%%", epoch + 1, config.epochs, loss, top1)
        history.append(row)
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4f}", top1=f"{top1:.2f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    facts = {"instances": loader.num_instances, "world_size": loader.world_size, "device": str(dev),
             "steps_per_epoch": len(loader)}
    return EvalResult(top1, best, best_epoch, history, config.to_dict() | facts, time.perf_counter() - start, paper)


def _sync_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BN running statistics drift apart between DDP's syncs)."""
    if _rank_world()[1] > 1:
        for buf in model.buffers():
            dist.broadcast(buf, 0)


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="student", unit="epoch", leave=False, disable=None)  # None: no bar when stderr is not a terminal


def training_targets(images: torch.Tensor, targets: torch.Tensor, teachers: Sequence[nn.Module],
                     config: StudentConfig) -> torch.Tensor:
    """The logits a batch is trained against: the stored (mixed) ones, or the ensemble's on ``images``."""
    if config.labels == "static":
        return targets
    with _autocast(images.device, config.amp):
        return ensemble_logits(teachers, images)


def _train_epoch(model: nn.Module, loader: DeviceLoader, opt: torch.optim.Optimizer,
                 sched: torch.optim.lr_scheduler.LRScheduler, teachers: Sequence[nn.Module], config: StudentConfig) -> float:
    """One pass; returns the mean loss of the epoch's batches (this rank)."""
    model.train()
    total = torch.zeros((), device=loader.device)
    steps = 0
    for images, targets in loader:
        labels = training_targets(images, targets, teachers, config)  # (B, NC)
        with _autocast(images.device, config.amp):
            logits = model(images)  # (B, NC)
        loss = kd_loss(logits, labels, config.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.detach()
        steps += 1
    return float(total) / max(1, steps)


class EvalSplit:
    """The test split as normalized device tensors, cached when small, sharded across ranks."""

    CACHE_BYTES = 1 << 30  # keep the uint8 test images on the device up to this size

    def __init__(self, source: EvalSource, mean: torch.Tensor, std: torch.Tensor, size: tuple[int, int],
                 device: torch.device) -> None:
        self.source, self.size, self.device = source, size, device
        self.mean, self.std = mean.to(device).view(1, -1, 1, 1), std.to(device).view(1, -1, 1, 1)
        rank, world = _rank_world()
        self.indices = torch.arange(len(source))[rank::world]  # (N / world,)
        self.targets = torch.as_tensor(source.targets)[self.indices].to(device)
        self._cache: torch.Tensor | None = None

    def _images(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.source.images(idx)).to(self.device)  # uint8 (B, C, H, W)

    def batches(self, batch_size: int) -> Any:
        """Yield (normalized float images, int64 targets) chunks of this rank's share."""
        if self._cache is None and len(self.indices):
            first = self._images(self.indices[:1])
            if first[0].numel() * len(self.indices) <= self.CACHE_BYTES:
                self._cache = torch.cat([self._images(self.indices[i:i + 4096]) for i in range(0, len(self.indices), 4096)])
        for i in range(0, len(self.indices), batch_size):
            raw = self._cache[i:i + batch_size] if self._cache is not None else self._images(self.indices[i:i + batch_size])
            x = raw.float().div_(255)  # (B, C, H, W)
            if tuple(x.shape[-2:]) != self.size:
                x = F.interpolate(x, size=self.size, mode="bilinear", antialias=True, align_corners=False)
            yield (x - self.mean) / self.std, self.targets[i:i + batch_size]

    @torch.no_grad()
    def top1(self, model: nn.Module, config: StudentConfig) -> float:
        """Top-1 accuracy in percent over the whole split (summed over ranks)."""
        was_training = model.training
        model.eval()
        counts = torch.zeros(2, device=self.device)  # correct, seen
        for x, y in self.batches(config.eval_batch_size):
            if config.channels_last and self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(self.device, config.amp):
                pred = model(x).argmax(1)  # (B,)
            counts += torch.stack([(pred == y).sum(), torch.tensor(len(y), device=self.device)]).float()
        if _rank_world()[1] > 1:
            dist.all_reduce(counts)
        model.train(was_training)
        return 100.0 * float(counts[0]) / max(1.0, float(counts[1]))
