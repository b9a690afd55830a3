"""The inspection commands: info, verify, stats, export, preview (exit codes and messages)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torchvision
from builders import make_groups
from click.testing import CliRunner

from infer_cli.main import main
from infer_data import InferDataset


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_help_lists_the_commands() -> None:
    code, out = run("--help")
    assert code == 0
    for name in ("info", "verify", "stats", "export", "preview"):
        assert name in out


def test_info(tiny_dir: Path) -> None:
    code, out = run("info", str(tiny_dir))
    assert code == 0
    assert "G=3  K=4 bases  M=2 compensators" in out and "instances   36" in out and "base=png(compress_level=6)" in out
    code, out = run("info", str(tiny_dir), "--json")
    assert code == 0 and json.loads(out)["totals"]["instances"] == 36


def test_missing_dataset_is_one_line_exit_1(tmp_path: Path) -> None:
    code, out = run("info", str(tmp_path))
    assert code == 1
    assert out.strip().splitlines() == [f"Error: No INFER dataset found at {tmp_path}: missing index.json. Create one with `infer distill` or check the path."]


def test_verify_ok_and_corrupt(tiny_dir: Path) -> None:
    code, out = run("verify", str(tiny_dir))
    assert code == 0 and "OK: 3 shards, 3 groups verified" in out
    shard = tiny_dir / "shard-000001.tar"
    data = bytearray(shard.read_bytes())
    data[100] ^= 1
    shard.write_bytes(bytes(data))
    code, out = run("verify", str(tiny_dir))
    lines = out.strip().splitlines()
    assert code == 1 and len(lines) == 1
    assert "shard-000001.tar: sha256" in lines[0] and lines[0].startswith("Error: ")


def test_stats_bytes_add_up_exactly(tiny_dir: Path) -> None:
    code, out = run("stats", str(tiny_dir), "--json")
    assert code == 0
    s = json.loads(out)
    on_disk = sum(p.stat().st_size for p in tiny_dir.iterdir())
    st = s["stored"]
    assert st["total"] == on_disk
    assert st["base"] + st["compensators"] + st["labels"] + st["metadata"] + st["container"] == on_disk
    assert st["base"] > 0 and st["compensators"] > 0 and st["labels"] > 0
    assert (s["instances"], s["groups"], s["k"], s["m"], s["stored_images"]) == (36, 3, 4, 2, 18)
    mat = s["materialized"]
    assert mat["exact"] and mat["label_bytes"] == 36 * 4 * 4 and mat["total"] == mat["image_bytes"] + mat["label_bytes"]
    assert s["original"] is None and "stored_bytes_over_original" not in s["ratios"]


def test_stats_knows_cifar10(dataset_factory) -> None:
    root = dataset_factory(make_groups(2, 10, 4, (3, 32, 32)), name="cifar10")
    code, out = run("stats", str(root), "--json")
    s = json.loads(out)
    assert s["original"] == {"name": "cifar10", "images": 50_000, "bytes": 153_600_000}
    assert s["ratios"]["stored_images_over_original"] == 28 / 50_000
    code, text = run("stats", str(root))
    assert code == 0 and "stored bytes / original" in text


def test_export_reference_layout_reads_with_imagefolder(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ref"
    code, text = run("export", str(tiny_dir), "--out", str(out), "--layout", "reference")
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == ["files.txt", "labels.npy", "new000", "new001", "new002", "new003", "targets.txt"]
    assert sorted(p.name for p in (out / "new002").iterdir())[:2] == ["class002_id000.jpg", "class002_id001.jpg"]
    folder = torchvision.datasets.ImageFolder(str(out))
    assert len(folder) == 36 and folder.classes == ["new000", "new001", "new002", "new003"]
    labels = np.load(out / "labels.npy", allow_pickle=False)
    files = (out / "files.txt").read_text().split()
    ds = InferDataset(tiny_dir)
    assert labels.shape == (36, 4) and len(files) == 36
    np.testing.assert_array_equal(labels[17], ds[17][1].numpy())
    assert files[17].startswith(f"new{ds.targets[17]:03d}/")


def test_export_png_is_exact_and_refuses_existing_output(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "png"
    code, _ = run("export", str(tiny_dir), "--out", str(out))
    assert code == 0
    folder = torchvision.datasets.ImageFolder(str(out))
    files = (out / "files.txt").read_text().split()
    ds = InferDataset(tiny_dir)
    img = torchvision.io.read_image(str(out / files[30]))
    assert torch.equal(img, (ds[30][0] * 255).round().to(torch.uint8))
    assert len(folder) == 36
    code, text = run("export", str(tiny_dir), "--out", str(out))
    assert code == 1 and "already exists and is not an empty folder" in text


def test_preview_writes_a_png(tiny_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    code, _ = run("preview", str(tiny_dir), "--out", str(tmp_path / "p.png"), "--group", "2")
    assert code == 0
    with Image.open(tmp_path / "p.png") as im:
        assert im.size == (5 * (64 + 2) + 2, 3 * (64 + 2) + 2)  # 1 + K columns, 1 + M rows, 8 px scaled to 64
    code, text = run("preview", str(tiny_dir), "--out", str(tmp_path / "p.png"), "--group", "3")
    assert code == 1 and "--group 3 is out of range; the dataset has groups 0..2" in text
    code, text = run("preview", str(tiny_dir), "--out", str(tmp_path / "p.jpg"))
    assert code == 1 and "give a name ending in .png" in text
    code, text = run("preview", str(tiny_dir), "--out", str(tmp_path / "q.png"), "--max-classes", "0")
    assert (code, text) == (1, "Error: --max-classes 0: must be at least 1 (the number of base slots to draw)\n")
    assert not (tmp_path / "q.png").exists()


def test_bench_reports_rates_and_ratios(tiny_dir: Path) -> None:
    code, out = run("bench", str(tiny_dir), "--workers", "0", "--epochs", "1", "--batch-size", "8", "--json")
    assert code == 0, out
    r = json.loads(out)
    assert r["instances"] == 36
    assert set(r["rates"]) == {"infer", "infer-batch", "imagefolder"}
    assert r["rates"]["infer"]["0"] > 0 and r["device"]["cpu"] > 0
    assert abs(r["ratios"]["infer"]["0"] - r["rates"]["infer"]["0"] / r["rates"]["imagefolder"]["0"]) < 1e-9
    code, out = run("bench", str(tiny_dir), "--workers", "two")
    assert code == 1 and "--workers 'two': give comma-separated integers" in out
