"""`infer plan`: text and JSON output, the paper's ImageNet ratios, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from infer_cli.main import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["plan", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(("ipc", "counts", "paper"), [
    (10, "G=9 groups, 9,036 stored images (budget ipc*K = 10,000), 45,000 instances (K*(M+1)*G)", "0.81%"),
    (50, "G=49 groups, 49,196 stored images (budget ipc*K = 50,000), 245,000 instances (K*(M+1)*G)", "4.04%"),
])
def test_imagenet_text(ipc: int, counts: str, paper: str) -> None:
    code, out = run("--dataset", "imagenet-1k", "--ipc", str(ipc), "--m", "4")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == ("imagenet-1k: 1,281,167 train images, K=1000 classes, 3x224x224, 147,897,477,120 train bytes "
                        "(official ILSVRC-2012 train tar)")
    assert lines[1] == f"ipc {ipc}, M=4: {counts}"
    assert any(line.startswith(f"  paper convention  {paper} = {ipc * 1000:,} budget images / 1,281,167") for line in lines)
    base = [line for line in lines if "npy:none" in line][0]
    assert base.split() == ["base", "npy:none", "=", f"{9 * 150_528_128 if ipc == 10 else 49 * 150_528_128:,}"]
    assert any(line.split()[:2] == ["png", "~"] for line in lines)  # entropy-coded: an estimate


def test_json_has_the_same_numbers_and_marks_estimates() -> None:
    code, out = run("--dataset", "imagenet-1k", "--ipc", "50", "--m", "4", "--json", "--label-codec", "topk:5")
    assert code == 0
    d = json.loads(out)
    assert (d["g"], d["stored_images"], d["instances"]) == (49, 49_196, 245_000)
    assert round(100 * d["ratios"]["paper"]["total"], 2) == 4.04
    labels = {f["codec"]: f for f in d["fields"]["labels"]}
    assert labels["fp16:none"]["estimate"] is False and labels["fp16:none"]["bytes"] == 49 * (5000 * 1000 * 2 + 128)
    assert labels["topk:5"]["estimate"] is True and d["layouts"][0]["codecs"]["labels"] == "topk:5"
    assert d["reference_layout"]["estimate"] is True and d["reference_layout"]["label_bytes"] == 245_000 * 1000 * 4


def test_image_folder_and_help(tmp_path: Path) -> None:
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "train" / c).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (9, 7)).save(tmp_path / "train" / c / f"{i}.png")
    code, out = run("--dataset", f"imagefolder:{tmp_path}", "--ipc", "3", "--m", "1", "--json")
    assert code == 0
    d = json.loads(out)
    assert (d["source"]["images"], d["k"], d["source"]["image_shape"], d["g"]) == (8, 2, [1, 7, 9], 2)
    code, out = CliRunner().invoke(main, ["--help"]).exit_code, CliRunner().invoke(main, ["--help"]).output
    assert code == 0 and "plan" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "mnist", "--ipc", "10"],
     "Error: --dataset 'mnist' is not a known source; use one of imagenet-1k, cifar10, cifar100, tiny-imagenet, "
     "fashion-mnist, embedded, or imagefolder:PATH for a folder of class folders"),
    (["--dataset", "imagenet-1k", "--ipc", "1", "--m", "4"],
     "Error: --ipc 1 is too small for one group: a group stores K+M=1004 images (K=1000 classes, M=4 teachers) but the "
     "budget is ipc*K=1000; use --ipc 2 or more, or fewer teachers"),
    (["--dataset", "cifar10", "--ipc", "10", "--base-codec", "jpg"],
     "Error: --base-codec 'jpg': unknown codec 'base/jpg'; known: "),
    (["--dataset", "cifar10", "--ipc", "10", "--compensator-codec", "int8:x"],
     "Error: --compensator-codec 'int8:x': codec 'int8:x': zstd_level must be an integer"),
    (["--dataset", "cifar10", "--ipc", "10", "--label-codec", "crops"],
     "Error: --label-codec 'crops': a codec for sets packed by `infer import`, which distill does not write; plan with another codec"),
])
def test_errors_are_one_line_exit_1(args: list[str], message: str) -> None:
    code, out = run(*args)
    assert code == 1
    assert len(out.strip().splitlines()) == 1
    assert out.strip().startswith(message)
