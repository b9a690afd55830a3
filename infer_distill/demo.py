"""The whole pipeline on the embedded dataset, sized for a laptop CPU (``infer demo``).

Steps, each skipped when its output already exists in the demo folder (so a rerun or an
interrupted run continues): train two small teachers of different architectures; distill with
INFER at ``ipc``; write the random-real baseline of the same stored-image budget (M = 0, same
static-label protocol, same teachers); train the same student on both with the INFER evaluation
protocol; report stored bytes, compression ratios and test accuracy.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from infer_data.constants import INDEX_FILENAME

from .config import TeacherSpec, create_preset
from .pipeline import ProgressFn, distill
from .sources import create_source
from .teacher_train import TeacherTrainConfig, train_teacher
from .teachers import save_teacher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the defaults finish in a few minutes on 2 CPU cores."""

    teachers: tuple[tuple[str, int, float], ...] = (("convnet", 2, 0.05), ("resnet20", 2, 0.1))  # (arch, epochs, lr)
    ipc: int = 10  # stored images per class for both datasets
    iterations: int = 100  # compensator optimization steps
    batch_groups: int = 8  # groups per optimization batch
    student_epochs: int = 30  # student training epochs (evaluation preset "embedded")
    seed: int = 0  # everything


@dataclass
class DemoRow:
    """One line of the result table."""

    name: str
    root: str
    stored_images: int
    instances: int
    stored_bytes: int
    bytes_ratio: float  # stored bytes / raw bytes of the embedded train split
    reference_bytes: int  # the reference code's layout: one JPEG q75 per instance + fp32 label per instance
    images_ratio: float  # stored images / images of the embedded train split
    top1: float  # student test top-1, percent, final epoch
    seconds: float  # distill + student wall time
    epochs: int = 0  # student epochs
    steps: int = 0  # student optimizer steps


@dataclass
class DemoReport:
    """What ``infer demo`` prints."""

    teachers: list[dict[str, Any]] = field(default_factory=list)  # arch, epochs, top1, seconds
    rows: list[DemoRow] = field(default_factory=list)
    source: dict[str, int] = field(default_factory=dict)  # images, bytes of the embedded train split
    seconds: float = 0.0


def _teachers(cfg: DemoConfig, out: Path, say: Callable[[str], None]) -> list[dict[str, Any]]:
    train, test = create_source("embedded", "train"), create_source("embedded", "test")
    c, h, _ = train.image_shape
    done = []
    for i, (arch, epochs, lr) in enumerate(cfg.teachers):
        path = out / "teachers" / f"{arch}.pt"
        start = time.perf_counter()
        if path.is_file():
            meta = torch.load(path, map_location="cpu", weights_only=True).get("meta", {})
            meta.setdefault("test_top1", float("nan"))
            say(f"teacher {arch}: reusing {path} (test top-1 {meta['test_top1']:.2f}%)")
        else:
            say(f"teacher {arch}: training {epochs} epochs on the embedded train split ...")
            tcfg = TeacherTrainConfig(arch=arch, epochs=epochs, lr=lr, seed=cfg.seed + i)
            model, acc = train_teacher(tcfg, train, test)
            meta = {"dataset": "embedded", "epochs": epochs, "test_top1": round(100 * (acc or 0.0), 2), "seed": tcfg.seed, "lr": lr}
            save_teacher(model, path, arch=arch, num_classes=len(train.classes), in_channels=c, image_size=h, meta=meta)
            say(f"teacher {arch}: test top-1 {meta['test_top1']:.2f}% ({time.perf_counter() - start:.0f} s)")
        done.append({"arch": arch, "path": str(path), "epochs": epochs, "top1": meta["test_top1"]})
    return done


def _distill(cfg: DemoConfig, teachers: list[dict[str, Any]], root: Path, *, compensators: bool, progress: ProgressFn | None) -> None:
    if (root / INDEX_FILENAME).is_file():
        return
    dcfg = create_preset("embedded", ipc=cfg.ipc, teachers=tuple(TeacherSpec(t["arch"], t["path"]) for t in teachers),
                         compensators=compensators, seed=cfg.seed, batch_groups=cfg.batch_groups)
    distill(dataclasses.replace(dcfg, optim=dataclasses.replace(dcfg.optim, iterations=cfg.iterations)), root, progress=progress, device="cpu")


def _row(name: str, root: Path, epochs: int, seed: int, started: float) -> DemoRow:
    from infer_data import InferDataset
    from infer_data.stats import materialized_bytes, stored_bytes

    from .evaluate import evaluate, make_config

    result = evaluate(root, make_config("embedded", epochs=epochs, seed=seed, eval_every=epochs),
                      test_data="embedded", device="cpu", progress=False)
    ds = InferDataset(root, target="class")
    index = ds.index
    src = index.provenance["source_size"]
    images = index.num_groups * (index.method.k + index.method.m)
    total = stored_bytes(root).total
    return DemoRow(name, str(root), images, index.num_instances, total, total / src["bytes"], materialized_bytes(ds).total,
                   images / src["images"], result.top1, time.perf_counter() - started, epochs,
                   int(result.config.get("steps_per_epoch", 0)) * epochs)


def _student_batch() -> int:
    from .evaluate import make_config

    return make_config("embedded").batch_size


def matched_epochs(epochs: int, instances: int, other_instances: int, batch_size: int) -> int:
    """Epochs on ``other_instances`` that take the same optimizer steps as ``epochs`` on ``instances``.

    Example:
        >>> matched_epochs(30, 240, 100, 64)
        60
    """
    steps = -(-instances // batch_size) * epochs
    return max(1, round(steps / -(-other_instances // batch_size)))


def run_demo(out_dir: str | Path, cfg: DemoConfig | None = None, *, say: Callable[[str], None] = logger.info,
             progress: ProgressFn | None = None) -> DemoReport:
    """Run the demo in ``out_dir``; see the module docstring.

    Raises:
        InferError: anything the steps raise (bad folder, damaged earlier outputs).
    """
    cfg = cfg or DemoConfig()
    out, start = Path(out_dir), time.perf_counter()
    report = DemoReport(teachers=_teachers(cfg, out, say))
    src = create_source("embedded")
    report.source = {"images": len(src), "bytes": len(src) * 28 * 28}
    for name, folder, comps in (("INFER", "infer", True), ("random real", "random-real", False)):
        t0 = time.perf_counter()
        say(f"{name}: distilling ipc {cfg.ipc} into {out / folder} ..." if comps else f"{name}: writing the baseline into {out / folder} ...")
        _distill(cfg, report.teachers, out / folder, compensators=comps, progress=progress if comps else None)
        say(f"{name}: training a student ({cfg.student_epochs} epochs) ...")
        report.rows.append(_row(name, out / folder, cfg.student_epochs, cfg.seed, t0))
    infer, real = report.rows
    epochs = matched_epochs(cfg.student_epochs, infer.instances, real.instances, _student_batch())
    say(f"random real: training a student for {epochs} epochs (as many optimizer steps as on INFER's {infer.instances} instances) ...")
    report.rows.append(_row("random real", out / "random-real", epochs, cfg.seed, time.perf_counter()))
    report.seconds = time.perf_counter() - start
    return report
