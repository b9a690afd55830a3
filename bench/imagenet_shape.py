"""ImageNet-shaped distilled sets: write, open, memory, and 224 px loader throughput vs ImageFolder.

Builds sets shaped like distilled ImageNet-1k (K = 1000 classes, 3 x 224 x 224, M = 4) with the
project's writer and measures, side by side in one run, for G = 1, 9 (ipc 10) and 49 (ipc 50)
with JPEG q90 bases, and G = 9 with PNG bases:

- write time and stored bytes by field (``infer_data.stats.stored_bytes``), and the bytes of the
  reference layout (one JPEG q75 file and one fp32 label per instance, sampled above 20,000
  instances as ``infer stats`` does);
- open time of ``InferDataset`` in a fresh process and that process's peak RSS, and the time to
  decode every group into the shared decoded cache;
- private memory (USS, ``Private_Clean + Private_Dirty`` of ``/proc/PID/smaps`` outside
  ``/dev/shm`` segments, which hold batches in flight) of each DataLoader worker with ``fork`` and with ``spawn`` workers, and the loader process's peak RSS;
- instances per second at 224 px with RandomResizedCrop(224) + horizontal flip + normalization:
  ``batch_loader`` + ``RandomResizedCropFlip`` (the package's batched path; also with
  ``recycle=False``, a new shared-memory segment per batch as a plain DataLoader), torchvision
  ``ImageFolder`` over a subset of the same instances exported as JPEG q90 files (PIL decode,
  ``RandomResizedCrop`` on the PIL image, flip, ``ToTensor``, ``Normalize``; same batch size,
  same workers), and ``DeviceLoader`` on the CPU (adds MixUp; no workers, one thread); and the
  same pair with uint8 output, for training that normalizes on the device:
  ``RandomResizedCropFlip(dtype=torch.uint8)`` against ImageFolder ending in ``PILToTensor``;
- CPU milliseconds per instance of each loader (user + system time of its main process and its
  workers over the timed batches): on a machine shared with other jobs the rates move with their
  load, while this cost does not.

Image content is real, not noise: each 224 px base is a 4 x 4 mosaic of Tiny-ImageNet-200 images
(the 32 px copy in ``../shared/data``) upscaled to 56 px, so it has real texture and edges, but
its JPEG/PNG sizes are an estimate of real ImageNet photos, not a measurement of them.
Compensators are smooth (two octaves of upsampled noise, standard deviation about 0.09, peaks
near 0.2, as optimized UFCs look), labels are teacher-like logits (the own class high, a few
related classes raised).

Usage::

    python bench/imagenet_shape.py [--quick] [--json OUT] [--work DIR] [--workers 2] [--batch 256]

``--quick`` runs the same code on a tiny shape (K = 40, 96 px, G = 1, 2, 3) to check it.
``--resume`` keeps the sets an interrupted run finished. Rates: the six loaders live in one
process and are timed in alternating rounds (3 rounds; 2 at G = 49, where the time goes to
writing and decoding) of 12 batches each, after the batches a loader's workers prefetched while
the others ran, and only once the previous loader's workers have gone idle; the median round
is reported. ImageFolder reads 2,560 instances of group 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from infer_data import DatasetInfo, GroupRecord, InferDataset, MethodInfo, ShardWriter, batch_loader
from infer_data.loader import DeviceLoader
from infer_data.stats import materialized_bytes, stored_bytes
from infer_data.transforms import RandomResizedCropFlip

TINY = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny-imagenet-200-32px.tar.gz"
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # torchvision's ImageNet statistics
M = 4
TIMED_BATCHES = 12  # per loader and round, after the batches its workers prefetched
TEACHERS = ["resnet18", "mobilenet_v2", "efficientnet_b0", "shufflenet_v2"]


@dataclass(frozen=True)
class Shape:
    """The data shape one run measures."""

    k: int  # classes = base images per group
    side: int  # image side in pixels
    sets: tuple[tuple[str, str, int], ...]  # (name, base codec, G)
    batch: int  # instances per batch
    folder_instances: int  # instances exported as JPEG files for the ImageFolder baseline


FULL = Shape(1000, 224, (("jpeg-g1", "jpeg", 1), ("jpeg-g9", "jpeg", 9), ("jpeg-g49", "jpeg", 49), ("png-g9", "png", 9)),
             256, 2560)
QUICK = Shape(40, 96, (("jpeg-g1", "jpeg", 1), ("jpeg-g2", "jpeg", 2), ("jpeg-g3", "jpeg", 3), ("png-g2", "png", 2)), 64, 256)


# -- realistic content --------------------------------------------------------------------------


def load_tiles(work: Path) -> torch.Tensor:
    """uint8 (N, 3, 32, 32): the Tiny-ImageNet-200 32 px training images, decoded once and cached."""
    cached = work / "tiles.npy"
    if cached.is_file():
        return torch.from_numpy(np.load(cached))
    from PIL import Image

    images = []
    with tarfile.open(TINY) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg") and "/train/" in f"/{member.name}":
                with Image.open(tar.extractfile(member)) as im:  # type: ignore[arg-type]
                    images.append(np.asarray(im.convert("RGB")).transpose(2, 0, 1))
    tiles = np.stack(images)
    np.save(cached, tiles)
    return torch.from_numpy(tiles)


def mosaics(tiles: torch.Tensor, n: int, side: int, gen: torch.Generator) -> torch.Tensor:
    """uint8 (n, 3, side, side): each a 4 x 4 mosaic of random tiles upscaled to side / 4 (bilinear)."""
    t = side // 4
    out = torch.empty(n, 3, side, side, dtype=torch.uint8)
    for s in range(0, n, 250):
        e = min(n, s + 250)
        pick = torch.randint(0, len(tiles), ((e - s) * 16,), generator=gen)
        up = F.interpolate(tiles[pick].float(), size=(t, t), mode="bilinear", align_corners=False, antialias=True)
        grid = up.view(e - s, 4, 4, 3, t, t).permute(0, 3, 1, 4, 2, 5).reshape(e - s, 3, side, side)
        out[s:e] = grid.round().clamp(0, 255).to(torch.uint8)
    return out


def compensators(m: int, side: int, gen: torch.Generator) -> torch.Tensor:
    """float32 (m, 3, side, side): smooth pixel deltas, std about 0.09, peaks near 0.2."""
    coarse = F.interpolate(torch.randn(m, 3, 7, 7, generator=gen) * 0.08, size=(side, side), mode="bicubic", align_corners=False)
    fine = F.interpolate(torch.randn(m, 3, side // 8, side // 8, generator=gen) * 0.04, size=(side, side), mode="bilinear",
                         align_corners=False)
    return (coarse + fine).clamp_(-0.25, 0.25)


def logits(k: int, m: int, gen: torch.Generator) -> torch.Tensor:
    """float32 (K * (M + 1), K): teacher-like logits, the own class about +9, three related classes +4."""
    rows = torch.randn(k * (m + 1), k, generator=gen) * 1.5  # (R, NC)
    own = torch.arange(k).repeat(m + 1)  # row j * K + slot -> class slot
    rows[torch.arange(len(own)), own] += 9.0
    near = torch.randint(0, k, (len(own), 3), generator=gen)
    rows.scatter_add_(1, near, torch.full((len(own), 3), 4.0))
    return rows


def write_set(root: Path, codec: str, groups: int, shape: Shape, tiles: torch.Tensor) -> float:
    """Write one set; returns seconds spent in the writer (content generation excluded)."""
    k, side = shape.k, shape.side
    info = DatasetInfo("imagenet1k", [f"n{i:08d}" for i in range(k)], (3, side, side), MEAN, STD, source="bench mosaics")
    method = MethodInfo(k, M, groups, (groups + 1) * (k + M) // k, TEACHERS, seed=0, producer="bench/imagenet_shape.py")
    gen = torch.Generator().manual_seed(groups)
    spent = 0.0
    with ShardWriter(root, dataset=info, method=method, codecs={"base": codec}, overwrite=True) as w:
        for g in range(groups):
            rec = GroupRecord(bases=mosaics(tiles, k, side, gen).numpy(), class_ids=np.arange(k, dtype=np.int64),
                              source_indices=np.arange(k, dtype=np.int64) + g * k,
                              compensators=compensators(M, side, gen).numpy(), teachers=TEACHERS,
                              labels=logits(k, M, gen).numpy())
            start = time.perf_counter()
            w.write_group(rec)
            spent += time.perf_counter() - start
    return spent


# -- measurements that run in fresh processes ---------------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak resident set since it started (VmHWM; ru_maxrss would carry the parent's over exec), MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def uss_mib(pid: int) -> float:
    """Private (unshared) memory of process ``pid``, MiB, from /proc/PID/smaps.

    Shared-memory segments (``/dev/shm``: the batches in flight to the main process, and a
    worker's recycled batch buffers) are left out: a page the main process has not touched yet
    counts as private there, though it is shared memory that every DataLoader also holds.
    """
    kb, skip = 0, False
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            name, _, value = line.partition(":")
            if "-" in name and " " in line.strip():  # a mapping's header line: address range, perms, ..., path
                skip = "/dev/shm/" in line
            elif name in ("Private_Clean", "Private_Dirty") and not skip:
                kb += int(value.split()[0])
    return kb / 1024


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` have used so far (/proc/PID/stat)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # fields from 3 (state) on
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


class _Rates:
    """Several loaders timed in alternating rounds, so a change in machine load hits all of them alike."""

    def __init__(self, loaders: dict[str, Any], warm: int = 2) -> None:
        self.loaders = loaders
        self.iters = {name: self._cycle(loader) for name, loader in loaders.items()}
        for it in self.iters.values():
            for _ in range(warm):
                next(it)
        self.samples: dict[str, list[float]] = {name: [] for name in loaders}
        self.cpu_ms: dict[str, list[float]] = {name: [] for name in loaders}  # CPU ms per instance, workers + main

    def _pids(self, name: str) -> list[int]:
        running = getattr(self.loaders[name], "_iterator", None)
        return [os.getpid(), *(w.pid for w in getattr(running, "_workers", []))]

    @staticmethod
    def _cycle(loader: Any) -> Any:
        while True:
            yield from loader

    def _settle(self, name: str, timeout: float = 60.0) -> None:
        """Wait until the workers of loader ``name`` finished the batches they had prefetched."""
        pids, deadline = self._pids(name)[1:], time.perf_counter() + timeout
        while pids and time.perf_counter() < deadline:
            before = cpu_seconds(pids)
            time.sleep(0.3)
            if cpu_seconds(pids) - before < 0.02:
                return

    def round(self, batches: int, drain: int) -> None:
        """Time ``batches`` batches of every loader, one loader after the other.

        After its turn a loader's workers finish the batches they prefetched before the next
        loader is timed (else they would compete with it), and the first ``drain`` batches of a
        turn are not timed (they were ready before it began).
        """
        for name, it in self.iters.items():
            for _ in range(drain):
                next(it)
            pids = self._pids(name)
            n, start, cpu = 0, time.perf_counter(), cpu_seconds(pids)
            for _ in range(batches):
                n += next(it)[0].shape[0]
            self.samples[name].append(n / (time.perf_counter() - start))
            self.cpu_ms[name].append((cpu_seconds(pids) - cpu) * 1e3 / n)
            self._settle(name)

    def medians(self) -> dict[str, float]:
        """Median instances per second of each loader over the rounds, and median CPU ms per instance."""
        rates = {name: float(np.median(v)) for name, v in self.samples.items()}
        return rates | {f"{name}_cpu_ms": float(np.median(v)) for name, v in self.cpu_ms.items()}


def child_open(root: str, cache: str) -> dict[str, Any]:
    """Open time and peak RSS of a fresh process that opens the set (decoded cache empty)."""
    start = time.perf_counter()
    ds = InferDataset(root, cache_dir=cache)
    return {"open_s": time.perf_counter() - start, "open_rss_mib": peak_rss_mib(), "instances": len(ds)}


def _batched(root: str, cache: str, side: int, uint8: bool = False) -> InferDataset:
    crop = RandomResizedCropFlip(side, dtype=torch.uint8) if uint8 else RandomResizedCropFlip(side, mean=MEAN, std=STD)
    return InferDataset(root, cache_dir=cache, batch_transform=crop)


def _worker_uss(loader: Any) -> list[float]:
    it = iter(loader)
    for _ in range(3):
        next(it)
    return [uss_mib(w.pid) for w in it._workers]


def _folder_loader(folder: str, side: int, batch: int, workers: int, uint8: bool = False) -> Any:
    """torchvision ImageFolder with the same augmentation, as users write it (crop on the PIL image).

    ``uint8``: end with ``PILToTensor`` (uint8 batches, normalized later on the device) instead of
    ``ToTensor`` + ``Normalize``.
    """
    import torchvision
    from torchvision import transforms as T

    tail = [T.PILToTensor()] if uint8 else [T.ToTensor(), T.Normalize(MEAN, STD)]
    tf = T.Compose([T.RandomResizedCrop(side), T.RandomHorizontalFlip(), *tail])
    ds = torchvision.datasets.ImageFolder(folder, transform=tf)
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0,
                                       generator=torch.Generator().manual_seed(0))


def child_measure(root: str, cache: str, folder: str, side: int, batch: int, workers: int, rounds: int) -> dict[str, Any]:
    """Decode-all time, fork-worker USS, then ImageFolder, batched and DeviceLoader rates in alternating rounds."""
    ds = _batched(root, cache, side)
    start = time.perf_counter()
    ds.factors(decode_all=True)
    out: dict[str, Any] = {"decode_all_s": time.perf_counter() - start}
    batched = batch_loader(ds, batch, num_workers=workers, generator=torch.Generator().manual_seed(0), persistent_workers=True)
    out["worker_uss_mib"] = _worker_uss(batched)
    batched_u8 = batch_loader(_batched(root, cache, side, uint8=True), batch, num_workers=workers,
                              generator=torch.Generator().manual_seed(0), persistent_workers=True)
    fresh = batch_loader(_batched(root, cache, side), batch, num_workers=workers, generator=torch.Generator().manual_seed(0),
                         persistent_workers=True, recycle=False)
    rates = _Rates({"imagefolder": _folder_loader(folder, side, batch, workers), "batched": batched, "batched_fresh": fresh,
                    "imagefolder_u8": _folder_loader(folder, side, batch, workers, uint8=True), "batched_u8": batched_u8,
                    "device_cpu": DeviceLoader(InferDataset(root, cache_dir=cache), batch_size=batch, normalize=True)})
    for _ in range(rounds):
        rates.round(TIMED_BATCHES, drain=2 * workers)
    out |= rates.medians()
    out["rate_samples"], out["cpu_ms_samples"] = rates.samples, rates.cpu_ms
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def child_spawn(root: str, cache: str, side: int, batch: int, workers: int) -> dict[str, Any]:
    """USS of each spawn worker after a few batches (cache already filled)."""
    loader = batch_loader(_batched(root, cache, side), batch, num_workers=workers, start_method="spawn", persistent_workers=True)
    return {"spawn_worker_uss_mib": _worker_uss(loader)}


def export_folder(root: Path, cache: Path, dest: Path, count: int) -> int:
    """Write ``count`` evenly spaced instances of group 0 as JPEG q90 files in an ImageFolder layout; returns bytes.

    Group 0 only, so that exporting decodes one group (its own cache) and leaves the measured
    cache empty; its content is drawn like every other group's.
    """
    from PIL import Image

    ds = InferDataset(root, cache_dir=cache, target="class")
    per_group = ds.k * (ds.m + 1)
    idx = torch.linspace(0, min(len(ds), per_group) - 1, count).round().long()
    total = 0
    for s in range(0, count, 128):
        x, cls = ds.compose_batch(idx[s:s + 128])
        for img, c, i in zip(x, cls.tolist(), idx[s:s + 128].tolist()):
            path = dest / f"{c:04d}" / f"{i:07d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()).save(path, quality=90)
            total += path.stat().st_size
    return total


CHILDREN = {"open": child_open, "measure": child_measure, "spawn": child_spawn}


def in_child(kind: str, *args: Any) -> dict[str, Any]:
    """Run ``CHILDREN[kind](*args)`` in a fresh interpreter; its JSON result."""
    cmd = [sys.executable, __file__, "--child", kind, json.dumps(args)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the run --------------------------------------------------------------------------------------


def measure_set(name: str, codec: str, groups: int, shape: Shape, tiles: torch.Tensor, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Every number for one set, the loaders timed side by side with the ImageFolder baseline."""
    root, cache, folder = work / name, work / f"{name}-cache", work / f"{name}-folder"
    for path in (cache, folder, work / f"{name}-export-cache", work / f"{name}-fresh-cache"):
        shutil.rmtree(path, ignore_errors=True)
    res: dict[str, Any] = {"groups": groups, "base_codec": codec, "write_s": write_set(root, codec, groups, shape, tiles)}
    res["stored"] = asdict(stored_bytes(root))
    res |= in_child("open", str(root), str(work / f"{name}-fresh-cache"))
    res["folder_instances"] = shape.folder_instances
    res["folder_bytes"] = export_folder(root, work / f"{name}-export-cache", folder, shape.folder_instances)
    rounds = 2 if groups > 20 else 3
    res |= in_child("measure", str(root), str(cache), str(folder), shape.side, shape.batch, args.workers, rounds)
    res |= in_child("spawn", str(root), str(cache), shape.side, shape.batch, args.workers)
    ds = InferDataset(root, cache_dir=cache, target="class")
    res["reference_layout"] = asdict(materialized_bytes(ds, max_exact=2000, sample=2000))
    res["timed"] = f"{rounds} rounds x {TIMED_BATCHES} batches per loader"
    res["ratios"] = {"batched_over_imagefolder": res["batched"] / res["imagefolder"],
                     "device_cpu_over_imagefolder": res["device_cpu"] / res["imagefolder"],
                     "batched_u8_over_imagefolder_u8": res["batched_u8"] / res["imagefolder_u8"],
                     "imagefolder_u8_cpu_over_batched_u8_cpu": res["imagefolder_u8_cpu_ms"] / res["batched_u8_cpu_ms"],
                     "imagefolder_cpu_over_batched_cpu": res["imagefolder_cpu_ms"] / res["batched_cpu_ms"],
                     "imagefolder_cpu_over_device_cpu": res["imagefolder_cpu_ms"] / res["device_cpu_cpu_ms"],
                     "reference_layout_over_stored": res["reference_layout"]["total"] / res["stored"]["total"]}
    if not args.keep:
        for path in (root, cache, folder, work / f"{name}-export-cache", work / f"{name}-fresh-cache"):
            shutil.rmtree(path, ignore_errors=True)
    return res


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one column per set."""
    rows: list[tuple[str, Any]] = [
        ("G (groups)", lambda r: r["groups"]), ("base codec", lambda r: r["base_codec"]),
        ("write, s", lambda r: f"{r['write_s']:.1f}"),
        ("stored bases, MiB", lambda r: _mib(r["stored"]["base"])), ("stored compensators, MiB", lambda r: _mib(r["stored"]["compensators"])),
        ("stored labels, MiB", lambda r: _mib(r["stored"]["labels"])), ("stored total, MiB", lambda r: _mib(r["stored"]["total"])),
        ("reference layout, MiB", lambda r: _mib(r["reference_layout"]["total"])),
        ("reference layout / stored", lambda r: f"{r['ratios']['reference_layout_over_stored']:.2f}x"),
        ("open (fresh process), s", lambda r: f"{r['open_s']:.2f}"), ("peak RSS after open, MiB", lambda r: f"{r['open_rss_mib']:.0f}"),
        ("decode all groups into the cache, s", lambda r: f"{r['decode_all_s']:.1f}"),
        ("worker USS, fork, MiB", lambda r: " / ".join(f"{v:.0f}" for v in r["worker_uss_mib"])),
        ("worker USS, spawn, MiB", lambda r: " / ".join(f"{v:.0f}" for v in r["spawn_worker_uss_mib"])),
        ("ImageFolder files: instances, MiB", lambda r: f"{r['folder_instances']}, {_mib(r['folder_bytes'])}"),
        ("loader process peak RSS, MiB", lambda r: f"{r['peak_rss_mib']:.0f}"),
        ("ImageFolder, JPEG q90 files, inst/s", lambda r: f"{r['imagefolder']:.0f}"),
        ("batch_loader + RandomResizedCropFlip, inst/s", lambda r: f"{r['batched']:.0f}"),
        ("  ratio to ImageFolder", lambda r: f"{r['ratios']['batched_over_imagefolder']:.2f}x"),
        ("  the same, recycle=False (a new shared segment per batch), inst/s", lambda r: f"{r['batched_fresh']:.0f}"),
        ("ImageFolder, uint8 output (PILToTensor), inst/s", lambda r: f"{r['imagefolder_u8']:.0f}"),
        ("batch_loader + RandomResizedCropFlip(dtype=uint8), inst/s", lambda r: f"{r['batched_u8']:.0f}"),
        ("  ratio to ImageFolder uint8", lambda r: f"{r['ratios']['batched_u8_over_imagefolder_u8']:.2f}x"),
        ("DeviceLoader on CPU (+ MixUp), inst/s", lambda r: f"{r['device_cpu']:.0f}"),
        ("  ratio to ImageFolder", lambda r: f"{r['ratios']['device_cpu_over_imagefolder']:.2f}x"),
        ("CPU ms per instance: ImageFolder", lambda r: f"{r['imagefolder_cpu_ms']:.2f}"),
        ("CPU ms per instance: batch_loader (ImageFolder / it)", lambda r: f"{r['batched_cpu_ms']:.2f} "
         f"({r['ratios']['imagefolder_cpu_over_batched_cpu']:.2f}x)"),
        ("CPU ms per instance: batch_loader, recycle=False", lambda r: f"{r['batched_fresh_cpu_ms']:.2f}"),
        ("CPU ms per instance: ImageFolder uint8", lambda r: f"{r['imagefolder_u8_cpu_ms']:.2f}"),
        ("CPU ms per instance: batch_loader uint8 (ImageFolder uint8 / it)", lambda r: f"{r['batched_u8_cpu_ms']:.2f} "
         f"({r['ratios']['imagefolder_u8_cpu_over_batched_u8_cpu']:.2f}x)"),
        ("CPU ms per instance: DeviceLoader (ImageFolder / it)", lambda r: f"{r['device_cpu_cpu_ms']:.2f} "
         f"({r['ratios']['imagefolder_cpu_over_device_cpu']:.2f}x)"),
    ]
    names = list(results)
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {label} | " + " | ".join(str(fn(results[n])) for n in names) + " |" for label, fn in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny shape (K=40, 96 px, G=1..3) to check the script")
    p.add_argument("--json", type=Path, help="write every number here")
    p.add_argument("--work", type=Path, default=Path("/tmp/infer-imagenet-shape"), help="scratch folder (several GB at full size)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--keep", action="store_true", help="keep the written sets and caches")
    p.add_argument("--resume", action="store_true", help="keep the sets an interrupted run finished (WORK/partial.json)")
    p.add_argument("--sets", help="comma-separated subset of the set names (default: all)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](*json.loads(args.child[1]))))
        return
    shape = QUICK if args.quick else FULL
    args.work.mkdir(parents=True, exist_ok=True)
    tiles = load_tiles(args.work)
    partial = args.work / ("partial-quick.json" if args.quick else "partial.json")
    results: dict[str, dict[str, Any]] = json.loads(partial.read_text()) if args.resume and partial.is_file() else {}
    start = time.perf_counter()
    chosen = [t for t in shape.sets if args.sets is None or t[0] in args.sets.split(",")]
    for name, codec, groups in chosen:
        if name in results:
            print(f"{name}: kept from {partial}", file=sys.stderr, flush=True)
            continue
        results[name] = measure_set(name, codec, groups, shape, tiles, args.work, args)
        partial.write_text(json.dumps(results, indent=1) + "\n")
        print(f"{name}: done at {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    g = [r for r in results.values() if r["base_codec"] == "jpeg"]
    summary = {"open_largest_over_smallest": g[-1]["open_s"] / g[0]["open_s"], "total_s": time.perf_counter() - start,
               "shape": asdict(shape), "workers": args.workers, "cpus": os.cpu_count()}
    print(table(results))
    print(f"\nopen time, G={g[-1]['groups']} over G={g[0]['groups']}: {summary['open_largest_over_smallest']:.2f}x; "
          f"run took {summary['total_s']:.0f} s on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps({"sets": results, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
