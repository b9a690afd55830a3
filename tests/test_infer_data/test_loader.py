"""DeviceLoader: epoch coverage, rank splits, device composites, MixUp on dense labels, errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from builders import make_groups, write_dataset

from infer_data import ConfigError, InferDataset
from infer_data.loader import DeviceData, DeviceLoader, LoaderConfig

N = 3 * 4 * 3  # G=3, K=4, M=2 -> 36 instances


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> InferDataset:
    root = write_dataset(tmp_path_factory.mktemp("loader") / "ds", make_groups(3, 4, 2, (3, 8, 8)))
    return InferDataset(root, normalize=True)


def _epoch(loader: DeviceLoader) -> list[torch.Tensor]:
    return [batch[-1] for batch in loader]


@pytest.mark.parametrize("batch_size", [1, 5, 7, 36, 100])
def test_every_instance_exactly_once_per_epoch(ds: InferDataset, batch_size: int) -> None:
    loader = DeviceLoader(ds, batch_size=batch_size, return_indices=True)
    for _ in range(2):
        batches = _epoch(loader)
        assert len(batches) == len(loader) == -(-N // batch_size)
        assert sorted(torch.cat(batches).tolist()) == list(range(N))
        assert all(len(b) == batch_size for b in batches[:-1])


@pytest.mark.parametrize(("world", "batch_size"), [(2, 5), (3, 4), (4, 7), (5, 3), (7, 36)])
def test_rank_split_covers_each_epoch_with_equal_batch_counts(ds: InferDataset, world: int, batch_size: int) -> None:
    per_rank = [DeviceLoader(ds, batch_size=batch_size, rank=r, world_size=world, return_indices=True) for r in range(world)]
    for _ in range(2):
        seen = [torch.cat(_epoch(ld)).tolist() for ld in per_rank]
        assert len({len(s) for s in seen}) == 1  # same number of instances on every rank
        assert len({len(ld) for ld in per_rank}) == 1  # same number of batches
        counts = Counter(i for s in seen for i in s)
        assert set(counts) == set(range(N))
        pad = -(-N // world) * world - N  # DistributedSampler-style padding
        assert sum(counts.values()) == N + pad
        assert sum(c - 1 for c in counts.values()) == pad


def test_rank_split_is_disjoint_when_divisible(ds: InferDataset) -> None:
    halves = [set(DeviceLoader(ds, batch_size=8, rank=r, world_size=2).indices(3).tolist()) for r in range(2)]
    assert halves[0].isdisjoint(halves[1]) and halves[0] | halves[1] == set(range(N))


def test_drop_last_drops_partial_batches_and_remainder(ds: InferDataset) -> None:
    loaders = [DeviceLoader(ds, batch_size=5, rank=r, world_size=5, drop_last=True, return_indices=True) for r in range(5)]
    seen = [torch.cat(_epoch(ld)).tolist() if len(ld) else [] for ld in loaders]
    assert all(len(ld) == 1 for ld in loaders)  # 36 // 5 = 7 per rank -> one full batch of 5
    flat = [i for s in seen for i in s]
    assert len(flat) == len(set(flat)) == 25


def test_epochs_are_seeded_and_set_epoch_replays(ds: InferDataset) -> None:
    a = DeviceLoader(ds, batch_size=6, seed=3, return_indices=True)
    e0, e1 = torch.cat(_epoch(a)), torch.cat(_epoch(a))
    assert not torch.equal(e0, e1)  # auto-advancing epochs reshuffle
    b = DeviceLoader(ds, batch_size=6, seed=3, return_indices=True)
    b.set_epoch(1)
    assert torch.equal(torch.cat(_epoch(b)), e1)
    x1 = [x for x, *_ in DeviceLoader(ds, batch_size=6, seed=3)]
    x2 = [x for x, *_ in DeviceLoader(ds, batch_size=6, seed=3)]
    assert all(torch.equal(p, q) for p, q in zip(x1, x2))
    assert torch.equal(DeviceLoader(ds, shuffle=False).indices(5), torch.arange(N))


def _check_composites(ds: InferDataset, device: str) -> None:
    loader = DeviceLoader(ds, batch_size=10, augment="none", mixup_beta=0, device=device, return_indices=True)
    for x, y, idx in loader:
        ref_x, ref_y = ds.compose_batch(idx.cpu())
        assert x.device.type == device
        assert torch.allclose(x.cpu(), ref_x, atol=1e-6)
        assert torch.equal(y.cpu(), ref_y)


def test_device_composites_equal_dataset_composites(ds: InferDataset) -> None:
    _check_composites(ds, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_composites_equal_dataset_composites_cuda(ds: InferDataset) -> None:
    _check_composites(ds, "cuda")


def test_lossy_bases_are_decoded_once(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "jpeg", make_groups(2, 3, 1, (3, 8, 8)), codecs={"base": "jpeg"})
    lazy = InferDataset(root)
    data = DeviceData.from_dataset(lazy)
    assert sorted(p.name for p in (lazy.store.path / "ready").iterdir()) == ["g000000", "g000001"]
    assert torch.equal(data.bases, torch.stack([lazy.group(g).bases for g in range(2)]))
    x, _ = next(iter(DeviceLoader(data, batch_size=4, augment="none", mixup_beta=0, normalize=False, shuffle=False)))
    assert torch.allclose(x, lazy.compose_batch(torch.arange(4))[0])


def _solve_mix(y: torch.Tensor, t: torch.Tensor) -> list[tuple[float, int]]:
    """For each mixed row y[b], (lambda, partner p) with y[b] = lam t[b] + (1 - lam) t[p]; (1, b) if unmixed."""
    out = []
    for b in range(len(y)):
        if torch.allclose(y[b], t[b], atol=1e-5):
            out.append((1.0, b))  # the permutation left b in place
            continue
        best = (float("inf"), 0.0, -1)
        for p in range(len(t)):
            d = t[b] - t[p]
            if p == b or float(d @ d) == 0:
                continue
            lam = float((y[b] - t[p]) @ d / (d @ d))
            best = min(best, (float((y[b] - lam * t[b] - (1 - lam) * t[p]).abs().max()), lam, p))
        assert best[0] < 1e-4, f"row {b} is not a mix of two batch rows"
        out.append((best[1], best[2]))
    return out


def test_mixup_labels_are_convex_combinations_with_large_lambda(ds: InferDataset) -> None:
    loader = DeviceLoader(ds, batch_size=12, augment="none", mixup_beta=0.4, return_indices=True)
    lams = []
    for x, y, idx in loader:
        ref_x, ref_y = ds.compose_batch(idx)
        mix = [(lb, p, b) for b, (lb, p) in enumerate(_solve_mix(y, ref_y)) if p != b]
        assert mix, "MixUp left the whole batch unmixed"
        lam = mix[0][0]
        assert 0.5 <= lam <= 1.0
        for lb, p, b in mix:
            assert lb == pytest.approx(lam, abs=1e-4)  # one lambda per batch
            assert torch.allclose(x[b], lam * ref_x[b] + (1 - lam) * ref_x[p], atol=1e-5)  # same partner for the image
        lams.append(lam)
    assert len({round(v, 4) for v in lams}) > 1  # redrawn per batch


def test_class_targets_are_mixed_one_hot_probabilities(ds: InferDataset) -> None:
    y = torch.cat([y for _, y in DeviceLoader(ds, batch_size=9, targets="class")])
    assert torch.allclose(y.sum(1), torch.ones(len(y)))
    assert (y.max(1).values >= 0.5 - 1e-6).all()


def test_augmented_batches_keep_shape_and_channels_last(ds: InferDataset) -> None:
    for augment in ("crop", "resized-crop", "flip"):
        x, y = next(iter(DeviceLoader(ds, batch_size=8, augment=augment, channels_last=True)))
        assert x.shape == (8, 3, 8, 8) and y.shape == (8, 4)
        assert x.is_contiguous(memory_format=torch.channels_last)


def test_errors(ds: InferDataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown DeviceLoader option\(s\) batchsize; known: augment"):
        DeviceLoader(ds, batchsize=4)
    with pytest.raises(ConfigError, match=r"rank=2, world_size=2: need 0 <= rank < world_size"):
        DeviceLoader(ds, rank=2, world_size=2)
    with pytest.raises(ConfigError, match=r"batch_size=0 must be >= 1"):
        LoaderConfig(batch_size=0)
    with pytest.raises(ConfigError, match=r"mixup_beta=-1 must be >= 0"):
        LoaderConfig(mixup_beta=-1)
    with pytest.raises(ConfigError, match=r"targets='hard' is not valid; choose one of 'soft', 'class'"):
        LoaderConfig(targets="hard")
    with pytest.raises(ConfigError, match=r"scale=\(0.5, 0.2\) must satisfy"):
        LoaderConfig(scale=(0.5, 0.2))
    with pytest.raises(ConfigError, match=r"padding=-1 must be >= 0"):
        LoaderConfig(padding=-1)
    root = write_dataset(tmp_path / "nolabels", make_groups(1, 3, 1, (1, 8, 8)), codecs={"labels": "none"})
    with pytest.raises(ConfigError, match=r"targets='soft' but the dataset stores no soft labels; use targets='class'"):
        DeviceLoader(DeviceData.from_dataset(InferDataset(root, target="class")))


def test_raw_tensors_are_checked(ds: InferDataset) -> None:
    d = DeviceData.from_dataset(ds)
    x, _ = next(iter(DeviceLoader(DeviceData(d.bases, d.compensators, d.labels, d.class_ids, d.mean, d.std, 4),
                                  batch_size=4, augment="none", mixup_beta=0, shuffle=False)))
    assert torch.allclose(x, ds.compose_batch(torch.arange(4))[0])
    with pytest.raises(ConfigError, match=r"DeviceData bases must be uint8 \(G, K, C, H, W\), got torch.float32"):
        DeviceData(d.bases.float(), d.compensators, d.labels, d.class_ids, d.mean, d.std, 4)
    with pytest.raises(ConfigError, match=r"DeviceData compensators \(3, 2, 3, 4, 4\) do not fit bases"):
        DeviceData(d.bases, d.compensators[..., :4, :4], d.labels, d.class_ids, d.mean, d.std, 4)
    with pytest.raises(ConfigError, match=r"DeviceData labels \(3, 12, 4\) do not fit: need \(G, K \* \(M \+ 1\), NC\) = \(3, 12, 5\)"):
        DeviceData(d.bases, d.compensators, d.labels, d.class_ids, d.mean, d.std, 5)
    with pytest.raises(ConfigError, match=r"DeviceData class_ids \(3, 3\) do not fit: need \(G, K\) = \(3, 4\)"):
        DeviceData(d.bases, d.compensators, d.labels, d.class_ids[:, :3], d.mean, d.std, 4)


def test_fused_resized_crop_of_full_boxes_is_the_composite_or_its_mirror(ds: InferDataset) -> None:
    loader = DeviceLoader(ds, batch_size=12, augment="resized-crop", scale=(1.0, 1.0), mixup_beta=0, return_indices=True)
    flips = []
    for x, _, idx in loader:
        ref = ds.compose_batch(idx)[0]  # normalized, as the loader's batches
        for b in range(len(idx)):
            same, mirrored = torch.allclose(x[b], ref[b], atol=1e-5), torch.allclose(x[b], ref[b].flip(-1), atol=1e-5)
            assert same or mirrored
            flips.append(mirrored and not same)
    assert 0 < sum(flips) < len(flips)


def test_dataset_normalize_false_and_class_targets_are_honoured(ds: InferDataset) -> None:
    plain = InferDataset(ds.root, normalize=False, target="class")
    loader = DeviceLoader(plain, batch_size=36, augment="none", mixup_beta=0, shuffle=False)
    assert (loader.config.normalize, loader.config.targets) == (False, "class")
    x, y = next(iter(loader))
    ref_x, ref_t = plain.compose_batch(torch.arange(N))
    assert torch.equal(x, ref_x) and float(x.min()) >= 0  # [0, 1] images, not normalized
    assert torch.equal(y, torch.nn.functional.one_hot(ref_t, 4).float())  # one-hot classes, no stored logits
    mixed = torch.cat([y for _, y, _ in DeviceLoader(plain, batch_size=12, augment="none", mixup_beta=0.4, return_indices=True)])
    assert torch.allclose(mixed.sum(1), torch.ones(N)) and float(mixed.min()) >= 0  # mixes of one-hot rows only
    assert (mixed > 0).sum(1).max() == 2 and (mixed.max(1).values >= 0.5 - 1e-6).all()
    explicit = DeviceLoader(plain, batch_size=36, augment="none", mixup_beta=0, shuffle=False, normalize=True, targets="soft")
    x2, y2 = next(iter(explicit))  # explicit config fields win over the dataset's settings
    torch.testing.assert_close(x2, ds.compose_batch(torch.arange(N))[0])
    assert torch.equal(y2, ds.compose_batch(torch.arange(N))[1])


def test_dataset_transforms_the_loader_would_ignore_are_refused(ds: InferDataset) -> None:
    with pytest.raises(ConfigError, match=r"^DeviceLoader: the dataset's transform, target_transform would be ignored \(the loader "
                                          r"augments on the device itself, see LoaderConfig.augment\); build the InferDataset without "
                                          r"it or use a DataLoader$"):
        DeviceLoader(InferDataset(ds.root, transform=lambda x: x, target_transform=lambda t: t))


def test_missing_cuda_device_is_a_one_line_error(ds: InferDataset) -> None:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        with pytest.raises(ConfigError, match=r"^device='cuda': CUDA is not available here \(no GPU, or a CPU-only torch\); use device='cpu'$"):
            DeviceLoader(ds, device="cuda")
    with pytest.raises(ConfigError, match=rf"^device='cuda:{max(count, 1) + 7}': (CUDA is not available here|this machine has {count} CUDA)"):
        DeviceLoader(ds, device=f"cuda:{max(count, 1) + 7}")
    with pytest.raises(ConfigError, match=r"^device='gpu0' is not a device; use 'cpu', 'cuda' or 'cuda:N'$"):
        DeviceLoader(ds, device="gpu0")
