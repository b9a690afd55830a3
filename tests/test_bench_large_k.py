"""bench/large_k.py --smoke on a 4-class image folder: both sets, three students, the table, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "large_k.py"


def _image_folder(root: Path) -> Path:
    """4 classes, 8 train and 3 val PNGs each, 32 x 32 RGB, class-dependent brightness."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 3)):
        for c in range(4):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray((rng.random((32, 32, 3)) * 60 + 50 * c).astype(np.uint8)).save(folder / f"{i}.png")
    return root


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_smoke_run_writes_rows_and_resumes(tmp_path: Path) -> None:
    data, out = _image_folder(tmp_path / "data"), tmp_path / "out"
    args = ("--dataset", "tiny", "--smoke", "--data", str(data), "--out", str(out), "--seeds", "0")
    first = _run(*args)
    assert first.returncode == 0, first.stderr
    rows = [json.loads(line) for line in (out / "tiny-smoke" / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    row = rows[0]
    # K = 4, M = 2, ipc 2 -> G = floor(2 / (2/4 + 1)) = 1 group of 4 x 3 instances; random real: 2 groups of 4
    assert (row["infer"]["instances"], row["rr_epochs"]["instances"], row["rr_steps"]["instances"]) == (12, 8, 8)
    assert row["infer"]["steps"] == row["rr_steps"]["steps"] == 1 and row["rr_epochs"]["steps"] == 1
    assert 0 < row["diag"]["mean_abs_u"] <= 1 and 0 <= row["diag"]["saturated"] <= 100
    assert [t["arch"] for t in row["teachers"]] == ["convnet_w32", "resnet8"]
    gap = row["infer"]["top1"] - row["rr_steps"]["top1"]
    assert f"gap at equal steps        {gap:6.2f} +- 0.00" in first.stdout
    again = _run(*args)  # every row done: nothing is retrained, the file keeps one row
    assert again.returncode == 0 and "teacher" not in again.stderr
    assert len((out / "tiny-smoke" / "rows.jsonl").read_text().splitlines()) == 1
    report = _run(*args, "--report")
    assert report.returncode == 0 and "INFER" in report.stdout and "random real, equal epochs" in report.stdout


def test_unknown_variant_is_a_usage_error(tmp_path: Path) -> None:
    result = _run("--dataset", "tiny", "--smoke", "--out", str(tmp_path), "--variants", "base,nope")
    assert result.returncode == 2 and "--variants: unknown nope; choose from base, T4" in result.stderr
