"""Default vs official producer choices on the embedded set (decision 0020), one switch at a time.

One ConvNet teacher trained on the embedded Fashion-MNIST subset, G = 2 groups (ipc 3, M = 1),
``--iterations`` steps. For each variant (default; clip on save only; roll jitter only; the whole
official mode) it distills, then measures on the stored data:

- ``mean_abs_u``: mean |u| of the stored compensators, [0, 1]-pixel units;
- ``saturated``: fraction of composite pixels ``base + u`` at or beyond 0 or 1 (clamped when composed);
- ``teacher_acc``: the teacher's accuracy on the stored composites ``clamp(base + u, 0, 1)``;
- ``student_top1``: a ConvNet student (evaluation preset ``embedded``, static labels) per seed.

Run from the project root (CPU; prints one JSON line and writes it to OUT/results.json)::

    .venv/bin/python bench/official_mode.py --out runs/official_mode --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {  # name -> (mode, optim overrides, augment overrides)
    "default": ("default", {}, {}),
    "clip_save": ("default", {"clip": "save"}, {}),
    "roll": ("default", {}, {"jitter_mode": "roll"}),
    "official": ("official", {}, {}),
}


def train_embedded_teacher(path: Path, epochs: int) -> Path:
    """A ConvNet trained on the embedded train split (reused if ``path`` exists)."""
    from infer_distill.sources import create_source
    from infer_distill.teacher_train import TeacherTrainConfig, train_teacher
    from infer_distill.teachers import save_teacher

    if path.is_file():
        return path
    train, test = create_source("embedded", "train"), create_source("embedded", "test")
    model, acc = train_teacher(TeacherTrainConfig(arch="convnet", epochs=epochs, lr=0.05, seed=0), train, test)
    c, h, _ = train.image_shape
    return save_teacher(model, path, arch="convnet", num_classes=len(train.classes), in_channels=c, image_size=h,
                        meta={"dataset": "embedded", "epochs": epochs, "test_top1": round(100 * (acc or 0.0), 2)})


def stored_metrics(root: Path, teacher_path: Path) -> dict[str, float]:
    """mean |u|, saturated composite pixels and teacher accuracy on the stored composites of ``root``."""
    from infer_data import InferDataset
    from infer_distill.teachers import load_teacher

    ds = InferDataset(root)
    f = ds.factors(decode_all=True)
    x0 = f.bases.float().unsqueeze(2) / 255  # (G, K, 1, C, H, W)
    u = f.compensators.unsqueeze(1)  # (G, 1, M, C, H, W)
    raw = x0 + u  # (G, K, M, C, H, W) unclamped composites
    c, h, _ = ds.index.dataset.image_shape
    teacher = load_teacher("convnet", teacher_path, num_classes=ds.index.dataset.num_classes, in_channels=c, image_size=h)
    mean = torch.tensor(ds.index.dataset.mean).view(1, -1, 1, 1)
    std = torch.tensor(ds.index.dataset.std).view(1, -1, 1, 1)
    images = raw.clamp(0, 1).flatten(0, 2)  # (G*K*M, C, H, W)
    classes = f.class_ids.unsqueeze(2).expand(*raw.shape[:3]).flatten()  # (G*K*M,)
    with torch.no_grad():
        pred = teacher((images - mean) / std).argmax(1)
    return {"mean_abs_u": float(f.compensators.abs().mean()), "saturated": float(((raw <= 0) | (raw >= 1)).float().mean()),
            "saturated_bases": float(((x0 <= 0) | (x0 >= 1)).float().mean()), "teacher_acc": float((pred == classes).float().mean())}


def student(root: Path, seed: int, epochs: int) -> float:
    """Final-epoch top-1 (percent) of the embedded-preset student on the distilled set at ``root``."""
    from infer_distill.evaluate import evaluate, make_config

    return evaluate(root, make_config("embedded", seed=seed, epochs=epochs), device="cpu", progress=False).top1


def run_variant(name: str, args: argparse.Namespace, teacher: Path) -> dict[str, Any]:
    """Distill one variant into OUT/NAME (reused if present) and measure it."""
    from infer_distill.config import TeacherSpec, create_preset
    from infer_distill.pipeline import distill

    mode, optim, augment = VARIANTS[name]
    cfg = create_preset("embedded", mode=mode, ipc=args.ipc, teachers=(TeacherSpec("convnet", str(teacher)),), seed=0)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, iterations=args.iterations, **optim),
                              augment=dataclasses.replace(cfg.augment, **augment))
    root = args.out / name
    start = time.perf_counter()
    if not (root / "index.json").is_file():
        distill(cfg, root, device="cpu")
    row: dict[str, Any] = {"distill_s": round(time.perf_counter() - start, 1), **stored_metrics(root, teacher)}
    tops = [student(root, seed, args.student_epochs) for seed in args.seeds]
    row |= {"student_top1": tops, "student_mean": statistics.mean(tops),
            "student_sd": statistics.stdev(tops) if len(tops) > 1 else 0.0}
    return row


def main() -> None:
    """Parse arguments, run every variant, print one JSON line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/official_mode"))
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--ipc", type=int, default=3, help="3 with K = 10, M = 1 gives G = 2 groups")
    p.add_argument("--teacher-epochs", type=int, default=2)
    p.add_argument("--student-epochs", type=int, default=30)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (keep the machine usable)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    teacher = train_embedded_teacher(args.out / "convnet.pt", args.teacher_epochs)
    meta = torch.load(teacher, map_location="cpu", weights_only=True)["meta"]
    result = {"teacher_test_top1": meta.get("test_top1"), "iterations": args.iterations, "ipc": args.ipc,
              "variants": {name: run_variant(name, args, teacher) for name in args.variants}}
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
