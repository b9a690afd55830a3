"""Device batch augmentation: shapes kept, pixels only moved, per-sample parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from infer_data import ConfigError
from infer_data import augment as aug


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(b: int = 16, c: int = 3, h: int = 12, w: int = 10) -> torch.Tensor:
    # distinct positive values, so every pixel of the original is identifiable
    return (torch.arange(b * c * h * w, dtype=torch.float32).view(b, c, h, w) + 1) / (b * c * h * w)


def test_padded_crop_is_a_window_of_the_padded_image() -> None:
    x = _images()
    offsets = aug.crop_offsets(x.shape[0], 3, generator=_gen())
    out = aug.padded_crop(x, offsets, 3)
    assert out.shape == x.shape
    padded = F.pad(x, (3, 3, 3, 3))
    for b, (dy, dx) in enumerate(offsets.tolist()):
        assert torch.equal(out[b], padded[b, :, dy:dy + x.shape[2], dx:dx + x.shape[3]])
    assert len({tuple(o) for o in offsets.tolist()}) > 4  # offsets differ per sample


def test_random_crop_only_moves_pixels() -> None:
    x = _images()
    out = aug.random_crop(x, 4, generator=_gen(1))
    for b in range(x.shape[0]):
        inside = out[b][out[b] != 0]
        assert set(inside.tolist()) <= set(x[b].flatten().tolist())


def test_crop_offsets_cover_the_range_and_zero_padding_is_identity() -> None:
    off = aug.crop_offsets(4000, 2, generator=_gen())
    assert off.min() == 0 and off.max() == 4
    x = _images()
    assert torch.equal(aug.padded_crop(x, off[:16], 0), x)


def test_flip_mirrors_exactly_the_masked_samples() -> None:
    x = _images()
    mask = aug.flip_mask(x.shape[0], generator=_gen(2))
    out = aug.apply_flip(x, mask)
    assert 0 < int(mask.sum()) < x.shape[0]
    for b in range(x.shape[0]):
        assert torch.equal(out[b], x[b].flip(2) if mask[b] else x[b])


def test_resized_crop_of_the_full_box_is_the_identity() -> None:
    x = _images(4, 3, 16, 16)
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0]]).repeat(4, 1)
    assert torch.allclose(aug.resized_crop(x, boxes, (16, 16)), x, atol=1e-6)


def test_resized_crop_of_an_exact_window_equals_slicing() -> None:
    x = torch.rand(2, 3, 16, 16, generator=_gen())
    boxes = torch.tensor([[2.0, 5.0, 8.0, 8.0], [8.0, 0.0, 8.0, 8.0]])
    out = aug.resized_crop(x, boxes, (8, 8))
    assert torch.allclose(out[0], x[0, :, 2:10, 5:13], atol=1e-6)
    assert torch.allclose(out[1], x[1, :, 8:16, 0:8], atol=1e-6)


def test_resized_crop_boxes_follow_the_sampling_rule() -> None:
    boxes = aug.resized_crop_boxes(2000, (24, 32), (0.2, 0.9), generator=_gen())
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 24).all() and (left + w <= 32).all()
    frac = h * w / (24 * 32)
    assert frac.min() > 0.15 and frac.max() <= 1.0
    assert boxes.unique(dim=0).shape[0] > 1000  # one box per sample, not one per batch


def test_random_resized_crop_keeps_shape_and_range() -> None:
    x = torch.rand(8, 3, 40, 40, generator=_gen())
    out = aug.random_resized_crop(x, (32, 32), generator=_gen(1))
    assert out.shape == (8, 3, 32, 32)
    assert out.min() >= 0 and out.max() <= 1


def test_same_generator_seed_same_result() -> None:
    x = _images()
    assert torch.equal(aug.random_crop(x, 4, generator=_gen(7)), aug.random_crop(x, 4, generator=_gen(7)))
    assert not torch.equal(aug.random_crop(x, 4, generator=_gen(7)), aug.random_crop(x, 4, generator=_gen(8)))


def test_resolve_augmentation() -> None:
    assert aug.resolve_augmentation("auto", 28) == "crop"
    assert aug.resolve_augmentation("auto", 64) == "crop"
    assert aug.resolve_augmentation("auto", 65) == "resized-crop"
    assert aug.resolve_augmentation("flip", 224) == "flip"
    with pytest.raises(ConfigError, match=r"augment='rotate' is not valid; choose one of 'auto', 'crop'"):
        aug.resolve_augmentation("rotate", 32)
