"""Peak memory of each reader as a function of the declared group size (docs/security.md).

    .venv/bin/python bench/memory_bound.py --k 8 32 128 --side 512

For each K a dataset of two groups (one per shard, M = 2, 3 x side x side, npy bases, fp16) is
written, then each reader runs in a fresh process: the peak RSS above the process's RSS after
imports (VmHWM - VmRSS, /proc/self/status) is printed next to D, the declared decoded bytes of one
group (:meth:`infer_data.index.DatasetIndex.group_nbytes`), and their ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys
from pathlib import Path
def kib(f):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f + ":"):
            return int(line.split()[1])
import torch, webdataset, PIL.Image, numpy  # imports first: the baseline includes them
from infer_data import InferDataset
from infer_data.index import read_index
from infer_data.verify import verify_dataset
from infer_data.wds import group_pipeline
root, reader, cache = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
Path("/proc/self/clear_refs").write_text("5")
base = kib("VmRSS")
if reader == "verify":
    assert verify_dataset(root, jobs=1).ok
elif reader == "dataset":
    ds = InferDataset(root, cache_dir=cache)
    for g in range(ds.num_groups):
        ds.ensure_groups([g])
elif reader == "wds":
    for rec in group_pipeline(root):
        pass
print(json.dumps({"base_kib": base, "peak_kib": kib("VmHWM"), "group_nbytes": read_index(root).group_nbytes()}))
"""


def write(root: Path, k: int, side: int) -> None:
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
    from builders import make_groups, write_dataset

    write_dataset(root, make_groups(2, k, 2, (3, side, side)), codecs={"base": "npy"}, max_shard_bytes=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--side", type=int, default=512)
    args = ap.parse_args()
    print("| K | D = group_nbytes (MiB) | reader | peak above baseline (MiB) | ratio |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="infer-mem-") as tmp:
        for k in args.k:
            root = Path(tmp) / f"k{k}"
            write(root, k, args.side)
            for reader in ("verify", "dataset", "wds"):
                out = subprocess.run([sys.executable, "-c", CHILD, str(root), reader, str(Path(tmp) / f"cache-{k}-{reader}")],
                                     capture_output=True, text=True, check=True, cwd=ROOT)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                extra = (r["peak_kib"] - r["base_kib"]) / 1024
                d = r["group_nbytes"] / 2**20
                print(f"| {k} | {d:.1f} | {reader} | {extra:.1f} | {extra / d:.2f} |", flush=True)


if __name__ == "__main__":
    main()
