"""`infer distill` and `infer teacher train` through click: exit codes, messages, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from infer_cli.main import main
from PIL import Image

from infer_data import read_index
from infer_distill.teachers import load_teacher


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_help_lists_producer_commands() -> None:
    code, out = run("--help")
    assert code == 0 and "distill" in out and "teacher" in out
    code, out = run("distill", "--help")
    assert code == 0 and "--batch-groups" in out and "--no-compensators" in out


def test_distill_cli_writes_a_dataset(tmp_path: Path, embedded_teachers: dict[str, Path]) -> None:
    code, out = run("distill", "--ipc", "2", "--teacher", f"convnet={embedded_teachers['a']}", "--iterations", "2",
                    "--out", str(tmp_path / "d"), "--seed", "3", "--no-progress")
    assert code == 0, out
    assert "G=1 groups x (K=10 bases + M=1 compensators), 20 instances" in out
    index = read_index(tmp_path / "d")
    assert index.provenance["config"]["preset"] == "embedded" and index.provenance["seed"] == 3
    assert index.provenance["config"]["optim"]["iterations"] == 2


def test_distill_cli_errors(tmp_path: Path, embedded_teachers: dict[str, Path]) -> None:
    ckpt = embedded_teachers["a"]
    code, out = run("distill", "--ipc", "1", "--teacher", f"convnet={ckpt}", "--teacher", f"convnet={ckpt}", "--out", str(tmp_path / "a"))
    assert code == 1 and "Error: --ipc 1 is too small for one group: a group stores K+M=12 images" in out
    code, out = run("distill", "--ipc", "2", "--teacher", "convnet", "--out", str(tmp_path / "b"))
    assert code == 1 and "Error: --teacher 'convnet' must look like ARCH=CHECKPOINT" in out
    code, out = run("distill", "--ipc", "2", "--teacher", f"resnet18={ckpt}", "--out", str(tmp_path / "c"))
    assert code == 1 and f"Error: teacher checkpoint {ckpt} holds a convnet but architecture resnet18 was requested" in out
    code, out = run("distill", "--ipc", "2", "--out", str(tmp_path / "d"))
    assert code == 1 and "Error: no teacher given" in out
    code, out = run("distill", "--dataset", "imagefolder:/no/such", "--ipc", "2", "--teacher", f"convnet={ckpt}", "--out", str(tmp_path / "e"))
    assert code == 1 and "Error: imagefolder:/no/such: no such folder; check the path" in out
    code, out = run("distill", "--ipc", "2", "--teacher", f"convnet={ckpt}", "--preset", "cifar", "--out", str(tmp_path / "f"))
    assert code == 1 and "Error: unknown preset 'cifar'" in out
    code, out = run("distill", "--ipc", "two", "--out", str(tmp_path / "g"))
    assert code == 2 and "is not a valid integer" in out


def _bright_dark_folder(root: Path) -> Path:
    """A two-class image folder a teacher separates easily: dark vs bright 12x12 grayscale images."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 48), ("test", 16)):
        for name, lo in (("bright", 170), ("dark", 0)):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(lo, lo + 86, (12, 12), dtype=np.uint8), "L").save(root / split / name / f"{i}.png")
    return root


def test_teacher_train_cli(tmp_path: Path) -> None:
    data, out_file = _bright_dark_folder(tmp_path / "bd"), tmp_path / "t.pt"
    code, out = run("teacher", "train", "--dataset", f"imagefolder:{data}", "--arch", "convnet", "--epochs", "3",
                    "--batch-size", "32", "--out", str(out_file), "--json")
    assert code == 0, out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["arch"] == "convnet" and report["top1"] >= 90.0  # chance is 50%
    model = load_teacher("convnet", out_file, num_classes=2, in_channels=1, image_size=12)
    assert not model.training
    meta = torch.load(out_file, weights_only=True)["meta"]
    assert meta["test_top1"] == report["top1"] and meta["dataset"] == f"imagefolder:{data}"
    code, out = run("teacher", "train", "--dataset", f"imagefolder:{data}", "--arch", "convnet", "--epochs", "1", "--out", str(out_file))
    assert code == 0 and f"convnet on imagefolder:{data}: test top-1" in out and f"use --teacher convnet={out_file}" in out
    code, out = run("teacher", "train", "--arch", "resnet19", "--out", str(tmp_path / "x.pt"))
    assert code == 1 and "Error: unknown teacher architecture 'resnet19'" in out and "Did you mean resnet18" in out
    code, out = run("teacher", "train", "--arch", "convnet", "--epochs", "0", "--out", str(tmp_path / "x.pt"))
    assert code == 1 and "Error: teacher training needs --epochs >= 1" in out
    code, out = run("teacher", "train", "--dataset", "cifar10", "--arch", "convnet", "--out", str(tmp_path / "x.pt"))
    assert code == 1 and "Error: dataset cifar10 needs --data-root" in out


def test_teacher_train_shows_progress_within_epochs(tmp_path: Path) -> None:
    data, out_file = _bright_dark_folder(tmp_path / "bd"), tmp_path / "t.pt"
    args = ["teacher", "train", "--dataset", f"imagefolder:{data}", "--arch", "convnet", "--epochs", "2", "--batch-size", "32",
            "--out", str(out_file)]
    result = CliRunner().invoke(main, args)  # 96 training images, 32 per batch: 3 batches per epoch
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [f"epoch {e}/2: {p}% ({b}/3 batch)" for e in (1, 2) for b, p in ((1, 33), (2, 66), (3, 100))]
    assert [line.split(":")[0] for line in result.stdout.splitlines()[:2]] == ["epoch 1/2", "epoch 2/2"]
    args[args.index("--epochs") + 1] = "1"
    result = CliRunner().invoke(main, [*args, "--quiet"])
    assert result.exit_code == 0 and result.stderr == "" and result.stdout.startswith("convnet on imagefolder:")


def test_distill_cli_json_and_progress_lines_in_a_log(tmp_path: Path, embedded_teachers: dict[str, Path]) -> None:
    result = CliRunner().invoke(main, ["distill", "--ipc", "2", "--teacher", f"convnet={embedded_teachers['a']}", "--iterations", "2",
                                       "--out", str(tmp_path / "d"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    index = read_index(tmp_path / "d")
    assert report == {"out": str(tmp_path / "d"), "groups": 1, "k": 10, "m": 1, "ipc": 2, "instances": 20,
                      "bytes": sum(s.bytes for s in index.shards), "shards": len(index.shards)}
    assert result.stderr == ("distill: 50% (1/2 step) groups 0/1\ndistill: 100% (2/2 step) groups 0/1\n"
                             "distill: 100% (2/2 step) groups 1/1\n")  # a log gets lines, no \r; the last one counts the group done
