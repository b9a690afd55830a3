"""InferDataset: the torchvision dataset contract, composites, DataLoader and DistributedSampler."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import make_groups
from torch.utils.data import DataLoader, DistributedSampler

from infer_data import ConfigError, InferDataset
from infer_data.indexing import split_index


def _expected(groups: list, i: int) -> tuple[torch.Tensor, np.ndarray]:
    k, m = groups[0].k, groups[0].m
    g, j, slot = split_index(i, k, m)
    x = groups[g].bases[slot].astype(np.float32) / 255
    if j:
        x = np.clip(x + groups[g].compensators[j - 1].astype(np.float16).astype(np.float32), 0, 1)
    return torch.from_numpy(x), groups[g].labels[j * k + slot].astype(np.float16).astype(np.float32)


def test_len_items_and_composites(tiny_dir: Path, tiny_groups: list) -> None:
    ds = InferDataset(tiny_dir)
    assert len(ds) == 3 * 4 * 3
    for i in range(len(ds)):
        x, y = ds[i]
        want_x, want_y = _expected(tiny_groups, i)
        assert x.dtype == torch.float32 and x.shape == (3, 8, 8) and y.shape == (4,)
        torch.testing.assert_close(x, want_x, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(y.numpy(), want_y)
    x0, _ = ds[0]
    torch.testing.assert_close(x0, torch.from_numpy(tiny_groups[0].bases[0] / 255).float())
    assert torch.equal(ds[-1][0], ds[len(ds) - 1][0])
    with pytest.raises(IndexError, match="index 36 out of range for 36 instances"):
        ds[36]


def test_getitems_matches_getitem(tiny_dir: Path) -> None:
    ds = InferDataset(tiny_dir)
    batch = ds.__getitems__([5, 0, 35, 12])
    for (x, y), i in zip(batch, [5, 0, 35, 12]):
        assert torch.equal(x, ds[i][0]) and torch.equal(y, ds[i][1])


def test_targets_classes_repr_and_hard_labels(tiny_dir: Path, tiny_groups: list) -> None:
    ds = InferDataset(tiny_dir, target="class")
    assert ds.classes == ["class0", "class1", "class2", "class3"]
    assert ds.class_to_idx["class2"] == 2
    assert ds.targets == [i % 4 for i in range(36)]
    assert [ds[i][1] for i in range(36)] == ds.targets
    text = repr(ds)
    assert "Number of datapoints: 36" in text and "K=4, M=2" in text and "base=png" in text
    with pytest.raises(ConfigError, match=r"target='hard' is not valid; choose one of 'soft', 'class'"):
        InferDataset(tiny_dir, target="hard")


def test_normalize_transform_and_target_transform(tiny_dir: Path) -> None:
    raw = InferDataset(tiny_dir)
    ds = InferDataset(tiny_dir, normalize=True, transform=lambda x: x.flip(-1), target_transform=lambda t: t.argmax())
    x, t = ds[7]
    torch.testing.assert_close(x, ((raw[7][0] - 0.5) / 0.25).flip(-1))
    assert t == raw[7][1].argmax()


def test_transform_runs_on_the_unit_image_before_normalization(tiny_dir: Path) -> None:
    from torchvision.transforms import ColorJitter

    raw = InferDataset(tiny_dir)
    jitter = ColorJitter(brightness=(0.5, 0.5))  # a fixed factor: x -> clamp(0.5 x, 0, 1)
    ds = InferDataset(tiny_dir, normalize=True, transform=jitter)
    want = torch.stack([(raw[i][0] * 0.5 - 0.5) / 0.25 for i in range(12)])  # jittered in [0, 1], then normalized
    torch.testing.assert_close(torch.stack([ds[i][0] for i in range(12)]), want)
    torch.testing.assert_close(ds[list(range(12))][0], want)  # the whole-batch path, same order
    assert float(want.min()) < -1.9  # dark pixels stay negative after normalization; nothing clamped away


def test_transform_returning_no_tensor_with_normalize_is_a_clear_error(tiny_dir: Path) -> None:
    ds = InferDataset(tiny_dir, normalize=True, transform=lambda x: x.numpy())
    with pytest.raises(ConfigError, match=r"^InferDataset transform returned ndarray \(3, 8, 8\); with normalize=True it must "
                                          r"return a float \(3, H, W\) tensor \(or pass normalize=False\)$"):
        ds[0]


def test_dataloader_with_persistent_workers_sees_each_instance_once(tiny_dir: Path) -> None:
    ds = InferDataset(tiny_dir, target="class")
    loader = DataLoader(ds, batch_size=5, shuffle=True, num_workers=2, persistent_workers=True,
                        generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        seen = torch.cat([x.flatten(1) for x, _ in loader])
        assert seen.shape == (36, 3 * 8 * 8)
        ref = torch.stack([ds[i][0].flatten() for i in range(36)])
        assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, ref.tolist()))


def test_distributed_sampler_splits_each_epoch_exactly(tiny_dir: Path) -> None:
    ds = InferDataset(tiny_dir)
    for epoch in range(2):
        seen: Counter[int] = Counter()
        for rank in range(3):
            sampler = DistributedSampler(ds, num_replicas=3, rank=rank, shuffle=True, seed=1)
            sampler.set_epoch(epoch)
            seen.update(iter(sampler))
        assert seen == Counter(range(36))


def test_jpeg_bases_decode_per_group_on_first_use(dataset_factory) -> None:
    groups = make_groups(4, 3, 1, (3, 16, 16))
    root = dataset_factory(groups, codecs={"base": {"name": "jpeg", "quality": 95}})
    ds = InferDataset(root)
    ready = ds.store.path / "ready"
    assert sorted(p.name for p in ready.iterdir()) == []
    x23 = ds[23][0]  # instance 23 lives in group 23 // (3 * 2) = 3
    assert sorted(p.name for p in ready.iterdir()) == ["g000003"]
    xs = [ds[i][0] for i in range(len(ds))]
    assert torch.equal(xs[23], x23)
    assert ds.factors().bases.shape == (4, 3, 3, 16, 16)
    assert all(x.shape == (3, 16, 16) and 0 <= x.min() and x.max() <= 1 for x in xs)
    batch = ds.__getitems__([0, 23, 5])
    assert torch.equal(batch[1][0], xs[23])
    images, targets = ds[[0, 23, 5]]
    assert images.shape == (3, 3, 16, 16) and targets.shape == (3, 3) and torch.equal(images[1], xs[23])


def test_batch_transform_crops_each_sample_from_its_padded_copy(tiny_dir: Path) -> None:
    from infer_data.transforms import RandomCropFlip

    plain = InferDataset(tiny_dir)
    ds = InferDataset(tiny_dir, batch_transform=RandomCropFlip(padding=2, seed=1))
    idx = list(range(20))
    out = [x for x, _ in ds.__getitems__(idx)]
    moved = 0
    for i, x in zip(idx, out):
        src = torch.nn.functional.pad(plain[i][0], (2, 2, 2, 2))
        windows = [src[:, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(x, w) or torch.equal(x, w.flip(-1)) for w in windows)
        moved += not torch.equal(x, plain[i][0])
    assert moved > 10
    assert "RandomCropFlip(padding=2" in repr(ds)


def test_batch_transform_in_workers_draws_new_crops_each_epoch(tiny_dir: Path) -> None:
    from infer_data.transforms import RandomCropFlip

    ds = InferDataset(tiny_dir, batch_transform=RandomCropFlip(padding=4))
    loader = DataLoader(ds, batch_size=6, num_workers=2, generator=torch.Generator().manual_seed(0))
    runs = [torch.cat([x for x, _ in loader]) for _ in range(2)]
    assert runs[0].shape == (36, 3, 8, 8)
    assert not torch.equal(runs[0], runs[1])  # a new epoch draws new worker seeds


def test_batch_transform_runs_before_normalization_so_padding_is_black(tiny_dir: Path) -> None:
    from infer_data.transforms import RandomCropFlip

    plain = InferDataset(tiny_dir)
    ds = InferDataset(tiny_dir, normalize=True, batch_transform=RandomCropFlip(padding=8, p=0.0, seed=3))
    for i, (x, _) in enumerate(ds.__getitems__(list(range(12)))):
        raw = x * 0.25 + 0.5  # undo the stored mean 0.5 / std 0.25
        src = torch.nn.functional.pad(plain[i][0], (8, 8, 8, 8))  # black border
        windows = [src[:, dy:dy + 8, dx:dx + 8] for dy in range(17) for dx in range(17)]
        assert min(float((raw - w).abs().max()) for w in windows) < 1e-5
