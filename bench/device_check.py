"""The device check's driver: official-mode INFER on CIFAR-10 end to end, one JSON line out.

NOT YET RUN ON A GPU: it has only run end to end on a 2-core CPU with ``--smoke`` (a few images,
one epoch, two iterations). The full settings are sized from the anchors in the project's design
notes (a ResNet-18 teacher trains 15 epochs in 21 s in bf16 on an H200); this teacher recipe runs
in fp32 with CPU-side augmentation, so the first GPU run must check the stage times it prints.

Stages (``seconds`` in the output times each):

1. ``teachers``: the four official-architecture teachers (ResNet-18, the official CIFAR
   MobileNetV2, EfficientNet-B0, ShuffleNet g=2) trained on ``DATA/train`` with the official
   CIFAR-10 normalization constants; test top-1 on ``DATA/test``.
2. ``distill``: ``--mode official`` ipc 10 with M = 4 (G = 7, 350 instances), and the random-real
   baseline of the same budget (G = 10, 100 real images, static labels from the same teachers).
3. ``students``: ResNet-18 with the official recipe: static labels, dynamic labels
   (epochs = static // (M + 1)), and random-real static labels at equal optimizer steps; each
   reports ``top1`` (final epoch) and ``paper_top1`` (best of every 10th epoch, as the paper).
4. ``producer``: group-iterations/s of the ResNet-18 compensator loss, many groups batched vs one
   group at a time (``bench/producer.py``).
5. ``loader``: instances/s of ``DeviceLoader`` on the distilled set vs torchvision ImageFolder
   over ``DATA/train`` (JPEG decode, crop + flip, ``--workers`` workers), batch 256.

    python bench/device_check.py --data /tmp/cifar10 --out runs/device_check [--smoke]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

TEACHERS = ("resnet18", "mobilenet_v2_official", "efficientnet_b0_official", "shufflenet_g2")
PAPER = {"static": 32.0, "dynamic": 30.7}  # CIFAR-10 ipc 10, ResNet-18 student (paper)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one run; ``FULL`` targets 8 minutes on one H100 (not yet measured there)."""

    teacher_epochs: int = 8  # per teacher (the official teachers train 200 epochs)
    teacher_batch: int = 512
    teacher_lr: float = 0.2
    iterations: int = 1000  # compensator steps (official)
    static_epochs: int = 400  # student epochs with static labels (official)
    student_batch: int = 64
    producer_groups: int = 50  # groups in the batched producer timing
    producer_iterations: int = 20
    workers: int = 16  # ImageFolder DataLoader workers
    loader_epochs: int = 1  # timed ImageFolder epochs over DATA/train
    device_epochs: int = 200  # timed DeviceLoader epochs over the 350 instances


FULL = Settings()
SMOKE = Settings(teacher_epochs=1, teacher_batch=32, teacher_lr=0.05, iterations=2, static_epochs=2, student_batch=16,
                 producer_groups=2, producer_iterations=2, workers=0, loader_epochs=1, device_epochs=1)


def _timed(seconds: dict[str, float], name: str, start: float) -> None:
    seconds[name] = round(time.perf_counter() - start, 1)


def train_teachers(data: Path, out: Path, s: Settings, device: str) -> dict[str, dict[str, Any]]:
    """Train (or reuse) the four teachers; returns arch -> {path, top1}."""
    from infer_distill.sources import create_source
    from infer_distill.teacher_train import TeacherTrainConfig, train_teacher
    from infer_distill.teachers import save_teacher

    train, test = create_source(f"imagefolder:{data}", "train"), create_source(f"imagefolder:{data}", "test")
    c, h, _ = train.image_shape
    done = {}
    for i, arch in enumerate(TEACHERS):
        path = out / "teachers" / f"{arch}.pt"
        if not path.is_file():
            cfg = TeacherTrainConfig(arch=arch, epochs=s.teacher_epochs, batch_size=s.teacher_batch, lr=s.teacher_lr, seed=i,
                                     normalization="cifar10")
            model, acc = train_teacher(cfg, train, test, device=device)
            save_teacher(model, path, arch=arch, num_classes=len(train.classes), in_channels=c, image_size=h,
                         meta={"test_top1": round(100 * (acc or 0.0), 2), "epochs": s.teacher_epochs, "normalization": "cifar10"})
        meta = torch.load(path, map_location="cpu", weights_only=True)["meta"]
        done[arch] = {"path": str(path), "top1": meta["test_top1"]}
    return done


def distill_sets(data: Path, out: Path, teachers: dict[str, dict[str, Any]], s: Settings, device: str) -> dict[str, Path]:
    """Official-mode INFER (M = 4) and random-real of the same budget; returns name -> folder."""
    from infer_distill.config import TeacherSpec, create_preset
    from infer_distill.pipeline import distill

    specs = tuple(TeacherSpec(arch, t["path"]) for arch, t in teachers.items())
    roots = {}
    for name, compensators in (("infer", True), ("random_real", False)):
        cfg = create_preset("cifar10", mode="official", dataset=f"imagefolder:{data}", ipc=10, teachers=specs,
                            compensators=compensators, seed=0, batch_groups=16)
        cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, iterations=s.iterations))
        roots[name] = out / name
        if not (roots[name] / "index.json").is_file():
            distill(cfg, roots[name], device=device)
    return roots


def _student(root: Path, data: Path, device: str, teachers: list[str], m: int, **overrides: Any) -> dict[str, Any]:
    from infer_distill.evaluate import evaluate, make_config

    config = make_config("cifar", mode="official", m=m, arch="resnet18", **overrides)
    config = dataclasses.replace(config, eval_every=config.epochs)  # test only at the paper's epochs and the last
    r = evaluate(root, config, test_data=f"imagefolder:{data}", teachers=teachers, device=device, progress=False)
    return {"top1": round(r.top1, 2), "paper_top1": r.paper_top1, "epochs": config.epochs,
            "steps": config.epochs * r.config["steps_per_epoch"], "instances": r.config["instances"]}


def students(roots: dict[str, Path], data: Path, teachers: dict[str, dict[str, Any]], s: Settings, device: str) -> dict[str, Any]:
    """Static, dynamic and random-real (equal steps) ResNet-18 students."""
    specs = [f"{arch}={t['path']}" for arch, t in teachers.items()]
    m = len(teachers)
    out = {"infer_static": _student(roots["infer"], data, device, [], m, epochs=s.static_epochs, batch_size=s.student_batch),
           "infer_dynamic": _student(roots["infer"], data, device, specs, m, labels="dynamic", batch_size=s.student_batch,
                                     epochs=max(1, s.static_epochs // (m + 1)))}  # the official rule: 400 // 5 = 80
    steps = out["infer_static"]["steps"]
    from infer_data import InferDataset

    per_epoch = math.ceil(len(InferDataset(roots["random_real"])) / s.student_batch)
    out["random_real_static_equal_steps"] = _student(roots["random_real"], data, device, [], m, epochs=max(1, round(steps / per_epoch)),
                                                     batch_size=s.student_batch)
    return out


def producer_ratio(s: Settings, device: str) -> dict[str, Any]:
    """Batched vs one-group-at-a-time compensator speed with a ResNet-18 teacher (bench/producer.py)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from producer import measure  # type: ignore[import-not-found]

    return measure("resnet18", 10, 3, 32, s.producer_groups, s.producer_iterations, 1 if s is SMOKE else 3, device)  # type: ignore[no-any-return]


def loader_rates(root: Path, data: Path, s: Settings, device: str) -> dict[str, Any]:
    """DeviceLoader instances/s on the distilled set vs ImageFolder over DATA/train."""
    from infer_data.benchmark import device_rate, imagefolder_rates

    dev = device_rate(root, 256, device, s.device_epochs)
    folder = imagefolder_rates(data / "train", 32, 256, [s.workers], s.loader_epochs)[s.workers]
    return {"device_loader_per_s": round(dev), "imagefolder_per_s": round(folder), "imagefolder_workers": s.workers,
            "ratio": round(dev / folder, 2)}


def main() -> None:
    """Run every stage and print one JSON line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="ImageFolder root with train/ and test/ (the CIFAR-10 JPEG copy)")
    p.add_argument("--out", type=Path, default=Path("runs/device_check"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="tiny settings for a CPU run of every stage")
    args = p.parse_args()
    s = SMOKE if args.smoke else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    teachers = train_teachers(args.data, args.out, s, args.device)
    _timed(seconds, "teachers", start)
    start = time.perf_counter()
    roots = distill_sets(args.data, args.out, teachers, s, args.device)
    _timed(seconds, "distill", start)
    start = time.perf_counter()
    accs = students(roots, args.data, teachers, s, args.device)
    _timed(seconds, "students", start)
    start = time.perf_counter()
    producer = producer_ratio(s, args.device)
    _timed(seconds, "producer", start)
    start = time.perf_counter()
    loader = loader_rates(roots["infer"], args.data, s, args.device)
    _timed(seconds, "loader", start)
    card = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    report = {"device": card, "smoke": args.smoke, "settings": dataclasses.asdict(s),
              "teachers_top1": {a: t["top1"] for a, t in teachers.items()}, "students": accs, "paper": PAPER,
              "producer": producer, "loader": loader, "seconds": seconds}
    (args.out / "result.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
