"""`infer evaluate` end to end on CPU: a tiny run, dynamic labels from a checkpoint, one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from builders import make_groups, write_dataset
from click.testing import CliRunner
from infer_cli.main import main

from infer_distill.teachers import create_teacher, save_teacher


@pytest.fixture(scope="module")
def embedded_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A distilled set shaped like the embedded default (10 classes, 1x28x28), named after it."""
    return write_dataset(tmp_path_factory.mktemp("cli") / "ds", make_groups(1, 10, 1, (1, 28, 28)), name="embedded")


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["evaluate", *args])
    return result.exit_code, result.output


def test_tiny_static_run_reports_json(embedded_like: Path) -> None:
    code, out = _run(str(embedded_like), "--epochs", "2", "--eval-every", "2", "--batch-size", "8", "--json", "--no-progress")
    assert code == 0, out
    obj = json.loads(out)
    assert 0.0 <= obj["top1"] <= 100.0 and obj["top1"] == obj["history"][-1]["top1"] == obj["best_top1"]
    assert [sorted(row) for row in obj["history"]] == [["epoch", "loss", "lr"], ["epoch", "loss", "lr", "top1"]]
    cfg = obj["config"]
    assert (cfg["arch"], cfg["labels"], cfg["epochs"], cfg["batch_size"], cfg["test_data"]) == ("convnet", "static", 2, 8, "embedded")
    assert cfg["instances"] == 20


def test_dynamic_run_with_a_teacher_checkpoint(embedded_like: Path, tmp_path: Path) -> None:
    ckpt = save_teacher(create_teacher("convnet", 10, in_channels=1, image_size=28), tmp_path / "t.pt",
                        arch="convnet", num_classes=10, in_channels=1, image_size=28)
    code, out = _run(str(embedded_like), "--labels", "dynamic", "--teacher", f"convnet={ckpt}", "--epochs", "1",
                     "--batch-size", "10", "--no-progress")
    assert code == 0, out
    assert "convnet student, dynamic labels, 1 epochs on 20 instances" in out
    assert "top-1 (final epoch):" in out and "optimistic" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--labels", "dynamic"], r"Error: labels='dynamic' needs teacher networks to relabel each batch; pass --teacher ARCH=CHECKPOINT"),
    (["--arch", "resnet19"], r"Error: unknown teacher architecture 'resnet19'; known: .* Did you mean resnet18"),
    (["--test-data", "imagefolder:/nonexistent/data"], r"Error: imagefolder:/nonexistent/data: no such folder; check the path"),
    (["--labels", "dynamic", "--teacher", "convnet"], r"Error: --teacher 'convnet': expected ARCH=CHECKPOINT"),
    (["--labels", "dynamic", "--teacher", "convnet=/nonexistent.pt"], r"Error: teacher checkpoint /nonexistent.pt does not exist"),
    (["--teacher", "convnet=x.pt"], r"Error: --teacher is only used with --labels dynamic \(static labels are stored\)"),
    (["--preset", "cifr"], r"Error: unknown student recipe 'cifr'; known: cifar, embedded, imagenet, tinyimagenet"),
    (["--epochs", "0"], r"Error: epochs=0 must be >= 1"),
])
def test_errors_are_one_line(embedded_like: Path, args: list[str], message: str) -> None:
    code, out = _run(str(embedded_like), *args, "--no-progress")
    assert code == 1
    assert len(out.strip().splitlines()) == 1, out
    assert re.search(message, out), out


def test_missing_dataset(tmp_path: Path) -> None:
    code, out = _run(str(tmp_path / "nothing"))
    assert code == 1
    assert re.fullmatch(r"Error: No INFER dataset found at .*nothing: missing index.json\. Create one with `infer distill` or check the path\.\n", out), out


@pytest.fixture(scope="module")
def unlabeled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded-shaped set stored with --label-codec none (hard labels only)."""
    return write_dataset(tmp_path_factory.mktemp("cli") / "nolabels", make_groups(1, 10, 1, (1, 28, 28)), name="embedded",
                         codecs={"labels": "none"})


def test_set_without_labels_evaluates_with_dynamic_labels_only(unlabeled: Path, tmp_path: Path) -> None:
    code, out = _run(str(unlabeled), "--epochs", "1", "--no-progress")
    assert code == 1
    assert out == (f"Error: --labels static: {unlabeled} stores no soft labels (label codec 'none'); evaluate it with "
                   "--labels dynamic --teacher ARCH=CHECKPOINT\n")
    ckpt = save_teacher(create_teacher("convnet", 10, in_channels=1, image_size=28), tmp_path / "t.pt",
                        arch="convnet", num_classes=10, in_channels=1, image_size=28)
    code, out = _run(str(unlabeled), "--labels", "dynamic", "--teacher", f"convnet={ckpt}", "--epochs", "1", "--batch-size", "10",
                     "--json", "--no-progress")
    assert code == 0, out
    obj = json.loads(out)
    assert obj["config"]["labels"] == "dynamic" and obj["config"]["instances"] == 20 and 0.0 <= obj["top1"] <= 100.0


def test_device_auto_and_a_missing_gpu(embedded_like: Path) -> None:
    import torch

    code, out = _run(str(embedded_like), "--device", "auto", "--epochs", "1", "--batch-size", "10", "--json", "--no-progress")
    assert code == 0, out
    assert json.loads(out)["config"]["device"].startswith("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        code, out = _run(str(embedded_like), "--device", "cuda", "--no-progress")
        assert (code, out) == (1, "Error: --device cuda: CUDA is not available here; use --device cpu\n")
    code, out = _run(str(embedded_like), "--device", "cuda:64", "--no-progress")
    assert code == 1 and re.fullmatch(r"Error: --device cuda:64: (CUDA is not available here; use --device cpu|this machine has \d+ CUDA "
                                      r"device\(s\); pick cuda:0 to cuda:\d+)\n", out), out
