"""Dataset sources: the embedded default, the idx reader, image folders and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infer_data.errors import (
    ConfigError,
    DatasetNotFoundError,
    FormatError,
    RegistryError,
)
from infer_distill.idx import read_idx
from infer_distill.sources import channel_stats, create_source, list_sources


def test_registry_lists_the_builtins() -> None:
    assert list_sources() == ["cifar10", "cifar100", "embedded", "fashion-mnist", "imagefolder"]


def test_embedded_is_balanced_and_has_train_stats() -> None:
    train, test = create_source("embedded"), create_source("embedded", "test")
    assert (len(train), len(test)) == (5000, 1000)
    assert train.image_shape == test.image_shape == (1, 28, 28)
    assert torch.bincount(train.targets).tolist() == [500] * 10
    assert torch.bincount(test.targets).tolist() == [100] * 10
    assert train.mean == test.mean and train.std == test.std
    x = train.images(torch.tensor([0, 7]))
    assert x.dtype == torch.uint8 and x.shape == (2, 1, 28, 28)
    assert channel_stats(train.images(torch.arange(len(train)))) == (train.mean, train.std)
    assert 0.2 < train.mean[0] < 0.4


def test_channel_stats_on_a_hand_built_case() -> None:
    imgs = torch.tensor([[[[0, 255]], [[51, 51]]]], dtype=torch.uint8)  # (1, 2, 1, 2)
    mean, std = channel_stats(imgs)
    assert mean == [0.5, 0.2] and std == [0.5, 0.0]


def _write_folder(root: Path, split: str, classes: list[str], per_class: int, mode: str = "RGB") -> None:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / split / c).mkdir(parents=True)
        for i in range(per_class):
            shape = (10, 12, 3) if mode == "RGB" else (10, 12)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / split / c / f"{i}.png")


def test_imagefolder_train_and_val(tmp_path: Path) -> None:
    _write_folder(tmp_path, "train", ["b", "a"], 3)
    _write_folder(tmp_path, "val", ["a", "b"], 2)
    train = create_source(f"imagefolder:{tmp_path}")
    val = create_source(f"imagefolder:{tmp_path}", "test", image_size=8)
    assert train.classes == ["a", "b"] and train.spec == f"imagefolder:{tmp_path}" and train.name == "imagefolder"
    assert train.image_shape == (3, 10, 12) and len(train) == 6
    assert train.targets.tolist() == [0, 0, 0, 1, 1, 1]
    assert val.image_shape == (3, 8, 8) and val.images([0, 3]).shape == (2, 3, 8, 8)
    first = np.array(Image.open(tmp_path / "train" / "a" / "0.png"))
    assert torch.equal(train.images([0])[0], torch.from_numpy(first).permute(2, 0, 1))
    assert torch.equal(train.load_all()[4], train.images([4])[0])


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"imagefolder:/no/such/dir: no such folder; check the path"):
        create_source("imagefolder:/no/such/dir")
    _write_folder(tmp_path, "train", ["a", "b"], 1, mode="L")
    with pytest.raises(DatasetNotFoundError, match=r"no val/ or test/ folder of class folders"):
        create_source(f"imagefolder:{tmp_path}", "test")
    _write_folder(tmp_path, "test", ["a", "zz"], 1, mode="L")
    with pytest.raises(ConfigError, match=r"class folder 'zz' has no counterpart in the train split"):
        create_source(f"imagefolder:{tmp_path}", "test")
    (tmp_path / "train" / "b" / "0.png").write_bytes(b"broken")
    with pytest.raises(FormatError, match=r"b/0\.png: cannot decode image"):
        create_source(f"imagefolder:{tmp_path}").images([1])
    (tmp_path / "train" / "a" / "0.png").write_bytes(b"broken")
    with pytest.raises(FormatError, match=r"a/0\.png: cannot decode image"):
        create_source(f"imagefolder:{tmp_path}")
    with pytest.raises(ConfigError, match="needs a path: imagefolder:PATH"):
        create_source("imagefolder")


def test_spec_and_split_errors(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="unknown dataset source 'cifar11'.*Did you mean cifar10"):
        create_source("cifar11")
    with pytest.raises(ConfigError, match="split='val' is not valid; choose one of train, test"):
        create_source("embedded", "val")
    with pytest.raises(DatasetNotFoundError, match="dataset cifar10 needs --data-root"):
        create_source("cifar10")
    with pytest.raises(DatasetNotFoundError, match=r"dataset cifar100: not found in .* \(expected .*cifar-100-python\)"):
        create_source("cifar100", data_root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"fashion-mnist: no train-images-idx3-ubyte\[\.gz\] in .*dataset-fashion-mnist"):
        create_source("fashion-mnist", data_root=str(tmp_path))


def test_idx_reader(tmp_path: Path) -> None:
    good = tmp_path / "a-idx3-ubyte"
    good.write_bytes(b"\0\0\x08\x03" + (2).to_bytes(4, "big") + (1).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes(range(6)))
    assert read_idx(good).tolist() == [[[0, 1, 2]], [[3, 4, 5]]]
    bad = tmp_path / "b"
    bad.write_bytes(b"\0\0\x08\x01" + (5).to_bytes(4, "big") + b"ab")
    with pytest.raises(FormatError, match=r"header declares shape \[5\] but holds 2 bytes"):
        read_idx(bad)
