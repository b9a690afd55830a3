"""Large-K experiment: INFER against random real images of the same stored-image budget.

For one dataset (``tiny``: Tiny-ImageNet-200 at 32 px, 250 images per class, K = 200;
``cifar10``: the CIFAR-10 JPEG copy, K = 10) and each seed: train the teachers once (seed 0,
shared by all seeds), distill ipc ``IPC`` with INFER (one compensator per teacher per group),
write the random-real baseline of the same ipc (M = 0, the same teachers' static labels, as
``infer demo`` does), and train the same student with the same recipe on both, random real at
equal epochs and at equal optimizer steps. Every row also records what could explain the gap:
mean |u| of the compensators, the share of composite pixels outside [0, 1] (saturated, cut by
the clamp), how often the teachers' stored labels pick the image's own class on the bases and
on the composites, and the teachers' test accuracy.

``--variants`` runs one-factor-at-a-time ablations (see ``VARIANTS``) on the given seeds.
Results go to ``OUT/DATASET/rows.jsonl`` as they come (a rerun skips finished rows and reuses
every distilled folder), and the table of mean, std and min/max over seeds is printed after
each row and with ``--report``.

    python bench/large_k.py --dataset tiny --seeds 0 1 2
    python bench/large_k.py --dataset tiny --seeds 0 --variants T4,iters60
    python bench/large_k.py --dataset cifar10 --smoke --data /path/to/small/imagefolder

Everything runs on the CPU with ``--threads`` torch threads (default 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from infer_data import InferDataset
from infer_data.constants import INDEX_FILENAME
from infer_distill.config import TeacherSpec, create_preset
from infer_distill.demo import matched_epochs
from infer_distill.evaluate import evaluate, make_config
from infer_distill.pipeline import distill
from infer_distill.sources import create_source
from infer_distill.teacher_train import TeacherTrainConfig, train_teacher
from infer_distill.teachers import is_teacher, register_teacher, save_teacher
from infer_distill.teachers.cifar_resnet import CifarResNet
from infer_distill.teachers.convnet import ConvNet

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ARCHIVES = {"tiny": ("tiny-imagenet-200-32px.tar.gz", "/tmp/tiny-imagenet-200-32px"), "cifar10": ("cifar10-jpeg.tar.gz", "/tmp/cifar10")}


def _register_small_nets() -> None:
    """Narrow CPU-sized architectures: ConvNet width 32 (depth 3) and ResNet-8 (widths 16/32/64)."""
    if not is_teacher("convnet_w32"):
        register_teacher("convnet_w32")(lambda num_classes, *, in_channels=3, image_size=32:
                                        ConvNet(num_classes, in_channels=in_channels, image_size=image_size, width=32))
    if not is_teacher("resnet8"):
        register_teacher("resnet8")(lambda num_classes, *, in_channels=3, image_size=32:
                                    CifarResNet(num_classes, in_channels=in_channels, image_size=image_size, blocks=1))


@dataclass(frozen=True)
class Settings:
    """Every knob of one run; the ablation variants replace one field."""

    teachers: tuple[tuple[str, int, float], ...]  # (arch, epochs, peak lr) trained on the full train split, seed = position
    ipc: int  # stored-image budget per class, both methods
    iterations: int  # compensator optimization steps
    comp_lr: float  # compensator Adam lr (normalized-image units)
    batch_groups: int  # groups optimized together
    student: str  # student architecture, both methods
    student_epochs: int  # epochs on INFER's set (random real: the same, and the step-matched count)
    temperature: float  # T of the student's KL loss (recipe "cifar": AdamW 1e-3, wd 0.01, batch 64, MixUp Beta(1,1))
    preset: str = "cifar10"  # distill preset the optimization settings start from (tinyimagenet has the same)
    unclamped: bool = False  # optimize the unclamped sum x0 + u (clip on save), if the package offers it

    def infer_tag(self) -> str:
        """Folder name part that identifies an INFER set (teachers + optimization)."""
        clamp = "-unclamped" if self.unclamped else ""
        return f"{self.teacher_tag()}-i{self.iterations}-lr{self.comp_lr:g}{clamp}"

    def teacher_tag(self) -> str:
        """Folder name part that identifies the teachers."""
        return "+".join(f"{arch}e{epochs}" for arch, epochs, _ in self.teachers)


TEACHERS = (("convnet_w32", 3, 0.05), ("resnet8", 1, 0.1))
FULL = {"tiny": Settings(TEACHERS, ipc=10, iterations=20, comp_lr=0.25, batch_groups=16, student="convnet_w32",
                         student_epochs=6, temperature=30.0, preset="tinyimagenet"),
        "cifar10": Settings(TEACHERS, ipc=10, iterations=20, comp_lr=0.25, batch_groups=16, student="convnet_w32",
                            student_epochs=100, temperature=30.0)}
SMOKE = Settings((("convnet_w32", 1, 0.05), ("resnet8", 1, 0.1)), ipc=2, iterations=2, comp_lr=0.25, batch_groups=16,
                 student="convnet_w32", student_epochs=1, temperature=30.0)
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "T4": {"temperature": 4.0},  # label temperature of the student loss
    "iters60": {"iterations": 60},  # 3x the optimization steps
    "iters5": {"iterations": 5},  # a quarter of the optimization steps
    "lr0.05": {"comp_lr": 0.05},  # smaller compensators
    "weak-teachers": {"teachers": tuple((a, 1, lr) for a, _, lr in TEACHERS)},  # 1 epoch each
    "strong-teachers": {"teachers": (("convnet_w32", 15, 0.05), ("resnet8", 5, 0.1))},  # 5x the epochs each
    "iters100": {"iterations": 100},  # 5x the optimization steps
    "student-long": {"student_epochs": 18},  # 3x the student epochs (both arms)
    "student-xl": {"student_epochs": 36},  # 6x the student epochs (both arms)
    "unclamped": {"unclamped": True},  # official mode's forward (needs the package's option)
}


def data_path(dataset: str, given: str | None) -> str:
    """The image folder of ``dataset``, extracted from ../shared/data into /tmp on first use."""
    if given:
        return given
    archive, folder = ARCHIVES[dataset]
    if not Path(folder, "train").is_dir():
        Path(folder).mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-xzf", str(SHARED / archive), "-C", folder], check=True)
    return folder


def train_teachers(s: Settings, spec: str, out: Path, log: Any) -> list[dict[str, Any]]:
    """Train (or reuse) the teachers of ``s`` on ``spec``; returns arch, path and test top-1 of each."""
    done, train, test = [], None, None
    for i, (arch, epochs, lr) in enumerate(s.teachers):
        path = out / "teachers" / f"{arch}-e{epochs}.pt"
        if not path.is_file():
            if train is None:
                train, test = create_source(spec, "train"), create_source(spec, "test")
            t0 = time.perf_counter()
            model, acc = train_teacher(TeacherTrainConfig(arch=arch, epochs=epochs, lr=lr, seed=i), train, test)
            c, h, _ = train.image_shape
            save_teacher(model, path, arch=arch, num_classes=len(train.classes), in_channels=c, image_size=h,
                         meta={"test_top1": round(100 * (acc or 0.0), 2), "epochs": epochs, "lr": lr, "seed": i,
                               "seconds": round(time.perf_counter() - t0, 1)})
        meta = torch.load(path, map_location="cpu", weights_only=True)["meta"]
        log(f"teacher {arch} ({epochs} epochs): test top-1 {meta['test_top1']:.2f}%")
        done.append({"arch": arch, "path": str(path), "top1": meta["test_top1"]})
    return done


def make_set(s: Settings, spec: str, teachers: list[dict[str, Any]], root: Path, seed: int, *, compensators: bool) -> None:
    """Distill INFER (``compensators``) or write the random-real baseline into ``root`` unless it exists."""
    if (root / INDEX_FILENAME).is_file():
        return
    cfg = create_preset(s.preset, dataset=spec, ipc=s.ipc, seed=seed, batch_groups=s.batch_groups, compensators=compensators,
                        teachers=tuple(TeacherSpec(t["arch"], t["path"]) for t in teachers))
    optim = dataclasses.replace(cfg.optim, iterations=s.iterations, lr=s.comp_lr)
    if s.unclamped:
        if not hasattr(optim, "clip"):
            raise SystemExit("this version of infer_distill has no unclamped forward (OptimConfig.clip); drop the 'unclamped' variant")
        optim = dataclasses.replace(optim, clip="save")
    distill(dataclasses.replace(cfg, optim=optim), root, device="cpu")


def diagnostics(root: Path) -> dict[str, float]:
    """Mean |u| (pixels in [0, 1] units), saturated share of composite pixels, label agreement per view."""
    ds = InferDataset(root)
    f = ds.factors(decode_all=True)
    g, k = f.class_ids.shape
    m = f.compensators.shape[1]
    labels = f.labels.float().view(g, m + 1, k, -1)  # (G, M+1, K, NC)
    agree = (labels.argmax(-1) == f.class_ids[:, None]).float().mean(dim=(0, 2))  # (M+1,)
    out = {"base_label_agree": round(100 * float(agree[0]), 2)}
    if m:
        x = f.bases.float()[:, None] / 255 + f.compensators[:, :, None]  # (G, M, K, C, H, W)
        out |= {"mean_abs_u": round(float(f.compensators.abs().mean()), 4),
                "saturated": round(100 * float(((x < 0) | (x > 1)).float().mean()), 2),
                "comp_label_agree": round(100 * float(agree[1:].mean()), 2)}
    return out


class Students:
    """Student runs with a JSON cache keyed by folder, epochs, temperature and seed."""

    def __init__(self, path: Path, s: Settings) -> None:
        self.path, self.s = path, s
        self.cache: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def top1(self, root: Path, epochs: int, seed: int) -> dict[str, Any]:
        """Final-epoch test top-1 (percent) and optimizer steps of the student on ``root``."""
        key = f"{root.name}|{epochs}|{self.s.temperature:g}|{seed}|{self.s.student}"
        if key not in self.cache:
            cfg = make_config("cifar", arch=self.s.student, epochs=epochs, seed=seed, eval_every=epochs,
                              temperature=self.s.temperature)
            res = evaluate(root, cfg, device="cpu", progress=False)
            self.cache[key] = {"top1": res.top1, "steps": int(res.config["steps_per_epoch"]) * epochs,
                               "instances": int(res.config["instances"]), "seconds": round(res.seconds, 1)}
            self.path.write_text(json.dumps(self.cache, indent=1))
        return dict(self.cache[key])


def run_row(s: Settings, spec: str, out: Path, variant: str, seed: int, log: Any) -> dict[str, Any]:
    """One (variant, seed): both sets, three students, diagnostics."""
    t0 = time.perf_counter()
    teachers = train_teachers(s, spec, out, log)
    infer_root, rr_root = out / f"infer-{s.infer_tag()}-s{seed}", out / f"rr-{s.teacher_tag()}-s{seed}"
    make_set(s, spec, teachers, infer_root, seed, compensators=True)
    make_set(s, spec, teachers, rr_root, seed, compensators=False)
    students = Students(out / f"students-s{seed}.json", s)  # one file per seed: seeds may run in parallel processes
    infer = students.top1(infer_root, s.student_epochs, seed)
    rr_epochs = students.top1(rr_root, s.student_epochs, seed)
    rr_steps = students.top1(rr_root, matched_epochs(s.student_epochs, infer["instances"], rr_epochs["instances"], 64), seed)
    return {"variant": variant, "seed": seed, "infer": infer, "rr_epochs": rr_epochs, "rr_steps": rr_steps,
            "diag": diagnostics(infer_root) | {"rr_" + k: v for k, v in diagnostics(rr_root).items()},
            "teachers": [{"arch": t["arch"], "top1": t["top1"]} for t in teachers],
            "settings": dataclasses.asdict(s), "seconds": round(time.perf_counter() - t0, 1)}


def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:6.2f} +- {std:4.2f} [{min(values):6.2f}, {max(values):6.2f}]"


def table(rows: list[dict[str, Any]]) -> str:
    """Mean +- std [min, max] over seeds per variant: top-1 of each arm and the gaps, plus diagnostics."""
    lines = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == variant]
        get = {name: [r[name]["top1"] for r in rs] for name in ("infer", "rr_epochs", "rr_steps")}
        d = rs[0]["diag"]
        lines += [f"{variant}: {len(rs)} seed(s) {sorted(r['seed'] for r in rs)}; steps INFER {rs[0]['infer']['steps']}, "
                  f"random real {rs[0]['rr_epochs']['steps']} (equal epochs) / {rs[0]['rr_steps']['steps']} (equal steps); "
                  "teachers " + ", ".join(f"{t['arch']} {t['top1']:.2f}%" for t in rs[0]["teachers"]),
                  f"  INFER                     {_spread(get['infer'])}",
                  f"  random real, equal epochs {_spread(get['rr_epochs'])}",
                  f"  random real, equal steps  {_spread(get['rr_steps'])}",
                  f"  gap at equal epochs       {_spread([a - b for a, b in zip(get['infer'], get['rr_epochs'])])}",
                  f"  gap at equal steps        {_spread([a - b for a, b in zip(get['infer'], get['rr_steps'])])}",
                  "  diagnostics (seed " + str(rs[0]["seed"]) + "): " + ", ".join(f"{k} {v}" for k, v in d.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the missing rows, print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(ARCHIVES), required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", default="base", help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--out", default="/tmp/large_k", help="work folder (reused: finished rows and sets are kept)")
    p.add_argument("--data", default=None, help="image folder (train/ and val/ or test/); default: extracted from ../shared/data")
    p.add_argument("--smoke", action="store_true", help="minutes-free sizes for a pipeline check (numbers mean nothing)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--report", action="store_true", help="print the table of finished rows and exit")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    _register_small_nets()
    out = Path(args.out) / (args.dataset + ("-smoke" if args.smoke else ""))
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()] if rows_path.is_file() else []
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if not args.report:
        spec = f"imagefolder:{data_path(args.dataset, args.data)}"
        for variant in args.variants.split(","):
            s = dataclasses.replace(SMOKE if args.smoke else FULL[args.dataset], **VARIANTS[variant])
            for seed in args.seeds:
                if any(r["variant"] == variant and r["seed"] == seed for r in rows):
                    continue
                row = run_row(s, spec, out, variant, seed, log) | {"dataset": args.dataset}
                rows.append(row)
                with rows_path.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                log(f"{variant} seed {seed}: INFER {row['infer']['top1']:.2f}%, random real {row['rr_epochs']['top1']:.2f}% "
                    f"(equal epochs) / {row['rr_steps']['top1']:.2f}% (equal steps), {row['seconds']:.0f} s")
                print(table(rows), flush=True)
    if args.report:
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
