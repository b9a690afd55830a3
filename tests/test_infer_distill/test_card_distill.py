"""`infer distill` publishes a card: --name/--license, preset dataset names, words.txt class names,
an absolute source that `infer evaluate` finds from any working directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from infer_cli.main import main
from infer_data.card import card_text
from infer_data.errors import ConfigError
from infer_distill.imagefolder import class_names

WNIDS = {"n01443537": "goldfish, Carassius auratus", "n01629819": "European fire salamander", "n01641577": "bullfrog"}


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def _tiny_imagenet_like(root: Path) -> Path:
    """train/ and val/ class folders named by wnid (4 and 2 RGB 12x12 PNGs each) plus words.txt."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for wnid in WNIDS:
            (root / split / wnid).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / split / wnid / f"{i}.png")
    lines = ["n00000001\tunused entity", *(f"{w}\t{n}" for w, n in WNIDS.items())]  # words.txt lists more wnids than the set
    (root / "words.txt").write_text("\n".join(lines) + "\n")
    return root


def test_distill_card_names_and_evaluate_from_another_directory(tmp_path: Path, teacher_checkpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    _tiny_imagenet_like(work / "tiny")
    teacher_checkpoint(work / "t.pt", "convnet", seed=0, num_classes=3, in_channels=3, image_size=12)
    monkeypatch.chdir(work)  # every path given relative to here
    code, out = run("distill", "--preset", "tinyimagenet", "--dataset", "imagefolder:tiny", "--ipc", "2", "--teacher", "convnet=t.pt",
                    "--iterations", "2", "--out", "out", "--name", "tiny-test", "--license", "CC0-1.0", "--no-progress")
    assert code == 0, out
    index = json.loads((work / "out" / "index.json").read_text())
    assert index["dataset"]["name"] == "tinyimagenet"  # the preset's, so evaluate picks the Tiny-ImageNet recipe
    assert index["dataset"]["classes"] == list(WNIDS.values())
    assert index["dataset"]["source"] == f"imagefolder:{(work / 'tiny').resolve()}"
    assert index["provenance"]["card"] == {"name": "tiny-test", "license": "CC0-1.0"}
    card = (work / "out" / "README.md").read_text()
    assert card == card_text(work / "out")  # written after index.json; `infer card` gives the same bytes
    assert card.startswith("# tiny-test\n") and "| license | CC0-1.0 |" in card and "| source dataset | tinyimagenet |" in card
    monkeypatch.chdir(elsewhere)
    code, out = run("evaluate", str(work / "out"), "--arch", "convnet", "--epochs", "1", "--batch-size", "8", "--json", "--no-progress")
    assert code == 0, out
    cfg = json.loads(out)["config"]
    assert cfg["test_data"] == f"imagefolder:{(work / 'tiny').resolve()}" and cfg["optimizer"] == "sgd"  # the Tiny-ImageNet recipe


def test_class_names_files(tmp_path: Path) -> None:
    folders = ["b", "a2"]
    assert class_names(tmp_path, folders) == folders
    (tmp_path / "words.txt").write_text("a2\tsecond\nb\tfirst\n")
    assert class_names(tmp_path, folders) == ["first", "second"]
    (tmp_path / "classes.txt").write_text("one\ntwo\n")  # plain lines: class order; wins over words.txt
    assert class_names(tmp_path, folders) == ["one", "two"]
    (tmp_path / "classes.txt").write_text("one\n")
    with pytest.raises(ConfigError, match=r"classes.txt: 1 names for 2 class folders; give one name per class"):
        class_names(tmp_path, folders)
    (tmp_path / "classes.txt").write_text("b\tfirst\n")
    with pytest.raises(ConfigError, match=r"classes.txt: no name for class folder\(s\) a2; add FOLDER<TAB>NAME lines"):
        class_names(tmp_path, folders)
    (tmp_path / "classes.txt").write_bytes(b"\xff\xfe\n")
    with pytest.raises(ConfigError, match=r"classes.txt: not UTF-8 text"):
        class_names(tmp_path, folders)
