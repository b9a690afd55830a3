"""The closing table of docs/consumer.md: every reader of a demo-sized set, checked against InferDataset
instance by instance (grey 28 x 28, K = 10, M = 2, G = 8: 240 instances, default codecs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import webdataset as wds
from builders import make_groups
from PIL import Image

from infer_data import DeviceLoader, InferDataset
from infer_data.export import export_dataset
from infer_data.wds import expand_groups, shard_urls

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture
def demo(dataset_factory: Any) -> tuple[Path, InferDataset, torch.Tensor, torch.Tensor]:
    """The set, its InferDataset, and every instance stacked: images (240, 1, 28, 28), targets (240, 10)."""
    root = dataset_factory(make_groups(8, 10, 2, (1, 28, 28)), max_shard_bytes=20000)
    ref = InferDataset(root)
    x0, y0 = ref[0]
    assert isinstance(x0, torch.Tensor) and x0.dtype == torch.float32 and x0.shape == (1, 28, 28)
    assert isinstance(y0, torch.Tensor) and y0.dtype == torch.float32 and y0.shape == (10,)
    xs, ys = zip(*(ref[i] for i in range(len(ref))))
    images, targets = torch.stack(xs), torch.stack(ys)
    assert len(ref) == 240 and 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    return root, ref, images, targets


def test_device_loader_batches_are_the_instances(demo: Any) -> None:
    root, ref, images, targets = demo
    loader = DeviceLoader(ref, batch_size=100, shuffle=False, augment="none", mixup_beta=0.0, return_indices=True)
    seen = 0
    for x, y, idx in loader:
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28) and y.dtype == torch.float32 and y.shape[1:] == (10,)
        assert torch.equal(idx, torch.arange(seen, seen + len(x))) and torch.equal(x, images[idx]) and torch.equal(y, targets[idx])
        seen += len(x)
    assert seen == 240


def test_webdataset_stage_yields_the_instances(demo: Any) -> None:
    root, _, images, targets = demo
    items = list(wds.WebDataset(shard_urls(root), shardshuffle=False).compose(expand_groups(root)))
    assert len(items) == 240
    assert torch.equal(torch.stack([x for x, _ in items]), images) and torch.equal(torch.stack([y for _, y in items]), targets)


def test_hugging_face_rows_expand_to_the_instances(demo: Any, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    root, _, images, targets = demo
    rows = datasets.load_dataset("webdataset", data_files={"train": shard_urls(root)}, split="train", cache_dir=str(tmp_path / "hf"))
    row = rows[0]
    assert len(rows) == 8 and row["__key__"] == "g000000"
    assert isinstance(row["base.png"], Image.Image) and row["base.png"].mode == "L" and row["base.png"].size == (28, 280)
    assert np.asarray(row["comp.npy.zst"]).shape == (2, 1, 28, 28) and np.asarray(row["label.npy.zst"]).shape == (30, 10)
    items = list(expand_groups(root)(rows))
    assert torch.equal(torch.stack([x for x, _ in items]), images) and torch.equal(torch.stack([y for _, y in items]), targets)


def test_imagefolder_export_holds_the_instances_rounded_to_8_bits(demo: Any, tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.functional import pil_to_tensor

    root, ref, images, targets = demo
    out = tmp_path / "export"
    export_dataset(root, out, layout="imagefolder", image_format="png")
    folder = ImageFolder(str(out))
    position = {Path(p).relative_to(out).as_posix(): i for i, (p, _) in enumerate(folder.samples)}
    files = (out / "files.txt").read_text().split()
    assert len(folder) == len(files) == 240
    labels = np.load(out / "labels.npy", allow_pickle=False)
    assert labels.dtype == np.float32 and torch.equal(torch.from_numpy(labels), targets)
    quantized = torch.round(images * 255).to(torch.uint8)  # (240, 1, 28, 28)
    for i, name in enumerate(files):
        img, cls = folder[position[name]]
        assert img.mode == "RGB" and cls == ref.targets[i]  # ImageFolder's default loader converts grey to RGB
        assert torch.equal(pil_to_tensor(img), quantized[i].expand(3, -1, -1)), name
