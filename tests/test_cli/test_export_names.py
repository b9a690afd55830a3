"""`infer export` never writes outside --out, and its imagefolder layout keeps the dataset's class indices."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torchvision
from builders import make_groups
from click.testing import CliRunner
from infer_cli.main import main

from infer_data import DatasetInfo, InferDataset, MethodInfo, ShardWriter
from infer_data.export import class_folders, safe_component

HOSTILE = ["../../x", "/etc/evil", "T-shirt/top", "", ".", "..", "a\x00b", "L" * 300, "new\nline \x1b[31mred", "C:\\win"]


def _write(root: Path, classes: list[str]) -> Path:
    groups = make_groups(8, len(classes), 2, (1, 28, 28))  # the demo's size: 8 x 10 x 3 = 240 instances
    info = DatasetInfo("embedded", classes, (1, 28, 28), [0.5], [0.25], source="synthetic")
    with ShardWriter(root, dataset=info, method=MethodInfo(len(classes), 2, 0, 10, ["t0", "t1"])) as w:
        for rec in groups:
            w.write_group(rec)
    return root


def test_hostile_class_names_stay_inside_out_and_imagefolder_targets_match(tmp_path: Path) -> None:
    root = _write(tmp_path / "ds", HOSTILE)
    out = tmp_path / "a" / "b" / "out"
    result = CliRunner().invoke(main, ["export", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "ds"]  # nothing next to the tree, nothing in /etc
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["out"]
    assert not Path("/etc/evil").exists()
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["000-_.._x", "001-_etc_evil", "002-T-shirt_top", "003", "004", "005", "006-a_b", f"007-{'L' * 100}",
                       "008-new_line _[31mred", "009-C__win"]
    assert json.loads((out / "classes.json").read_text()) == dict(zip(folders, HOSTILE))
    folder = torchvision.datasets.ImageFolder(str(out))
    ds = InferDataset(root, target="class")
    files = (out / "files.txt").read_text().splitlines()
    assert len(folder) == len(ds) == len(files) == 240
    want = dict(zip(files, ds.targets))
    got = {str(Path(p).relative_to(out)): t for p, t in folder.samples}
    assert got == want  # every one of the 240 targets is the dataset's own class index
    for i in (0, 17, 239):
        img = torchvision.io.read_image(str(out / files[i]))
        assert torch.equal(img, (ds[i][0] * 255).round().to(torch.uint8))


def test_sorted_folders_follow_class_order_past_a_thousand_classes() -> None:
    names = class_folders([f"c{i}" for i in range(1001)])
    assert names[0] == "0000-c0" and names[1000] == "1000-c1000" and sorted(names) == names
    assert class_folders(["b", "a"]) == ["000-b", "001-a"]  # class order, not name order
    assert safe_component("  .hidden. ") == "hidden" and safe_component("é" * 80) == "é" * 50  # 100 UTF-8 bytes


def test_export_leaves_no_temporary_tree_when_it_fails(tmp_path: Path, tiny_dir: Path) -> None:
    (tiny_dir / "shard-000001.tar").write_bytes(b"x")  # wrong size: the dataset fails to load
    result = CliRunner().invoke(main, ["export", str(tiny_dir), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and len(result.output.splitlines()) == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".infer-tmp-*"))
