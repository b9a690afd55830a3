"""ImageNet shapes end to end: K=1000 bases of 3x224x224, M=3, two groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from infer_data import DatasetInfo, GroupRecord, InferDataset, MethodInfo, ShardWriter
from infer_data.indexing import split_index


def _group(g: int, k: int = 1000, m: int = 3) -> GroupRecord:
    yy, xx = np.mgrid[0:224, 0:224]
    tile = ((yy + xx) % 256).astype(np.uint8)  # (224, 224), compressible like photos are
    bases = np.broadcast_to(tile, (k, 3, 224, 224)).copy()
    bases[:, 0, 0, 0] = np.arange(k) % 256
    bases[:, 1, 0, 0] = g
    comps = np.zeros((m, 3, 224, 224), np.float32)
    comps[:, :, :8, :8] = 0.01 * (np.arange(m, dtype=np.float32)[:, None, None, None] + 1)
    labels = np.zeros((k * (m + 1), k), np.float32)
    labels[np.arange(k * (m + 1)), np.arange(k * (m + 1)) % k] = 5.0
    return GroupRecord(bases, np.arange(k), np.arange(k) + g * k, comps, ["resnet18", "mobilenet_v2", "efficientnet_b0"], labels)


def test_imagenet_shaped_dataset_round_trips(tmp_path: Path) -> None:
    info = DatasetInfo("imagenet1k", [f"n{i:08d}" for i in range(1000)], (3, 224, 224),
                       [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    method = MethodInfo(1000, 3, 0, 50, ["resnet18", "mobilenet_v2", "efficientnet_b0"])
    codecs = {"base": {"name": "npy", "zstd_level": 1}, "compensators": {"name": "fp16", "zstd_level": 1},
              "labels": {"name": "fp16", "zstd_level": 1}}
    with ShardWriter(tmp_path / "in1k", dataset=info, method=method, codecs=codecs, max_shard_bytes=64 << 20) as w:
        for g in range(2):
            w.write_group(_group(g))
    ds = InferDataset(tmp_path / "in1k", normalize=True)
    assert len(ds) == 2 * 1000 * 4
    bases = ds.factors(decode_all=True).bases
    assert bases.shape == (2, 1000, 3, 224, 224) and bases.dtype == torch.uint8
    for i in (0, 999, 1000 * 4 + 2 * 1000 + 17, len(ds) - 1):
        g, j, slot = split_index(i, 1000, 3)
        x, y = ds[i]
        assert x.shape == (3, 224, 224) and y.shape == (1000,)
        assert int(y.argmax()) == slot and ds.targets[i] == slot
        raw = bases[g, slot].float() / 255
        if j:
            raw = (raw + ds.group(g).compensators[j - 1]).clamp(0, 1)
        torch.testing.assert_close(x, (raw - ds.mean.view(3, 1, 1)) / ds.std.view(3, 1, 1))
    assert int(bases[1, 5, 1, 0, 0]) == 1 and int(bases[0, 300, 0, 0, 0]) == 300 % 256
