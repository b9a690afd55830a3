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


# -- fused resized crop from the factors -------------------------------------------------------


def _factors(c: int, h: int, w: int, m: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = _gen(seed)
    bases = torch.randint(0, 256, (6, c, h, w), dtype=torch.uint8, generator=g)
    comps = (torch.randn(max(m, 1) * 3, c, h, w, generator=g) * 0.15).to(dtype) if m else None
    return bases, comps


def _composed(bases: torch.Tensor, comps: torch.Tensor | None, bi: torch.Tensor, ci: torch.Tensor) -> torch.Tensor:
    x = bases[bi].float() / 255
    if comps is not None:
        x = x + torch.where((ci >= 0).view(-1, 1, 1, 1), comps[ci.clamp(min=0)].float(), torch.zeros(()))
    return x.clamp(0, 1)


@pytest.mark.parametrize(("c", "h", "w", "size", "m", "dtype"), [
    (3, 24, 31, (20, 17), 2, torch.float16),  # non-square in and out, fp16 compensators
    (1, 16, 12, (40, 33), 3, torch.float32),  # grayscale, upscale only
    (3, 30, 30, (12, 12), 0, torch.float32),  # M = 0, mostly downscales
])
def test_fused_resized_crop_equals_torchvision_on_the_composite(c: int, h: int, w: int, size: tuple[int, int], m: int,
                                                                 dtype: torch.dtype) -> None:
    from torchvision.transforms.v2 import functional as TF

    bases, comps = _factors(c, h, w, m, dtype)
    b = 24
    bi = torch.randint(0, 6, (b,), generator=_gen(1))
    ci = torch.randint(-1, comps.shape[0], (b,), generator=_gen(2)) if comps is not None else torch.full((b,), -1)
    boxes = aug.resized_crop_boxes(b, (h, w), generator=_gen(3))
    flip = aug.flip_mask(b, generator=_gen(4))
    out = aug.resized_crop_factors(bases, bi, comps, ci, boxes, size, flip=flip)
    ref = _composed(bases, comps, bi, ci)
    assert out.shape == (b, c, *size) and out.dtype == torch.float32
    for i in range(b):
        top, left, ch, cw = (int(v) for v in boxes[i])
        want = TF.resized_crop(ref[i], top, left, ch, cw, list(size), antialias=False)
        assert torch.allclose(out[i], want.flip(-1) if flip[i] else want, atol=2e-6), i
    assert 0 < int(flip.sum()) < b
    assert torch.allclose(aug.resized_crop(ref, boxes, size, flip=flip), out, atol=2e-6)  # the composed-batch path agrees


def test_fused_resized_crop_normalizes_writes_into_out_and_reuses_scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    import infer_data.resample as resample

    bases, comps = _factors(3, 20, 20, 2, torch.float32)
    bi, ci = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([-1, 0, 5, -1, 2])
    boxes = aug.resized_crop_boxes(5, (20, 20), generator=_gen(5))
    mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.25, 0.3])
    plain = aug.resized_crop_factors(bases, bi, comps, ci, boxes, (16, 16))
    scratch, out = aug.Scratch(), torch.empty(5, 3, 16, 16)
    monkeypatch.setattr(resample, "CPU_BLOCK_BYTES", 1)  # one sample per block
    got = aug.resized_crop_factors(bases, bi, comps, ci, boxes, (16, 16), mean=mean, std=std, out=out, scratch=scratch)
    assert got is out
    assert torch.allclose(out, (plain - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1), atol=1e-5)
    buffers = {k: v.data_ptr() for k, v in scratch._buffers.items()}
    again = aug.resized_crop_factors(bases, bi, comps, ci, boxes, (16, 16), mean=mean, std=std, scratch=scratch)
    assert torch.equal(again, out) and {k: v.data_ptr() for k, v in scratch._buffers.items()} == buffers


def test_whole_batch_path_of_accelerators_gives_the_same_crops(monkeypatch: pytest.MonkeyPatch) -> None:
    """Accelerators take the batch at once with full-height row tables (no host sync); run that path here."""
    import infer_data.resample as resample

    bases, comps = _factors(3, 18, 22, 2, torch.float16)
    bi, ci = torch.randint(0, 6, (9,), generator=_gen(1)), torch.randint(-1, 6, (9,), generator=_gen(2))
    boxes, flip = aug.resized_crop_boxes(9, (18, 22), generator=_gen(3)), aug.flip_mask(9, generator=_gen(4))
    blocked = aug.resized_crop_factors(bases, bi, comps, ci, boxes, (16, 20), flip=flip)
    monkeypatch.setattr(resample, "_in_blocks", lambda device: False)
    whole = aug.resized_crop_factors(bases, bi, comps, ci, boxes, (16, 20), flip=flip)
    assert torch.allclose(whole, blocked, atol=1e-6)


def test_full_box_without_flip_is_the_composite() -> None:
    bases, comps = _factors(3, 10, 14, 1, torch.float16)
    bi, ci = torch.tensor([0, 5, 2]), torch.tensor([0, -1, 2])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 14.0]]).repeat(3, 1)
    out = aug.resized_crop_factors(bases, bi, comps, ci, boxes, (10, 14))
    assert torch.allclose(out, _composed(bases, comps, bi, ci), atol=1e-6)


def test_fused_resized_crop_errors() -> None:
    bases, comps = _factors(3, 10, 10, 1, torch.float32)
    bi, ci = torch.tensor([0, 1]), torch.tensor([0, -1])
    good = torch.tensor([[0.0, 0.0, 5.0, 5.0], [2.0, 2.0, 8.0, 8.0]])
    with pytest.raises(ConfigError, match=r"boxes must lie inside the 10x10 image with height and width >= 1; draw them with resized_crop_boxes"):
        aug.resized_crop_factors(bases, bi, comps, ci, good + torch.tensor([0.0, 0.0, 0.0, 3.0]), (8, 8))
    with pytest.raises(ConfigError, match=r"boxes of shape \(1, 4\) do not fit a batch of 2"):
        aug.resized_crop_factors(bases, bi, comps, ci, good[:1], (8, 8))
    with pytest.raises(ConfigError, match=r"out must be a contiguous float32 tensor of shape \(2, 3, 8, 8\), got torch.float32 \(2, 3, 8, 7\)"):
        aug.resized_crop_factors(bases, bi, comps, ci, good, (8, 8), out=torch.empty(2, 3, 8, 7))
    with pytest.raises(ConfigError, match=r"bases must be uint8 \(N, C, H, W\), got torch.float32"):
        aug.resized_crop_factors(bases.float(), bi, comps, ci, good, (8, 8))
    with pytest.raises(ConfigError, match=r"compensators \(3, 3, 9, 10\) do not fit bases \(6, 3, 10, 10\)"):
        aug.resized_crop_factors(bases, bi, comps[..., :9, :], ci, good, (8, 8))
    with pytest.raises(ConfigError, match=r"comp_idx is required with comps"):
        aug.resized_crop_factors(bases, bi, comps, None, good, (8, 8))


def test_padded_crop_folds_the_flip_into_its_columns() -> None:
    x = _images()
    offsets = aug.crop_offsets(x.shape[0], 3, generator=_gen())
    mask = aug.flip_mask(x.shape[0], generator=_gen(1))
    assert torch.equal(aug.padded_crop(x, offsets, 3, flip=mask), aug.apply_flip(aug.padded_crop(x, offsets, 3), mask))
    assert torch.equal(aug.padded_crop(x, offsets, 0, flip=mask), aug.apply_flip(x, mask))


# -- shipped batch transforms -------------------------------------------------------------------


def test_random_resized_crop_flip_factors_path_equals_composed_path() -> None:
    from infer_data.transforms import RandomResizedCropFlip

    bases, comps = _factors(3, 32, 28, 2, torch.float16)
    bi, ci = torch.arange(6), torch.tensor([-1, 0, 1, 2, 3, 4])
    a = RandomResizedCropFlip(24, seed=5, mean=[0.5] * 3, std=[0.25] * 3)
    b = RandomResizedCropFlip((24, 24), seed=5, mean=[0.5] * 3, std=[0.25] * 3)
    fused = a.from_factors(bases, bi, comps, ci)
    composed = b(_composed(bases, comps, bi, ci))
    assert fused.shape == (6, 3, 24, 24)
    assert torch.allclose(fused, composed, atol=1e-5)
    assert not torch.allclose(a.from_factors(bases, bi, comps, ci), fused)  # fresh boxes every call
    assert "RandomResizedCropFlip(size=(24, 24), scale=(0.08, 1.0)" in repr(a)


def test_random_resized_crop_flip_errors() -> None:
    from infer_data.transforms import RandomResizedCropFlip

    with pytest.raises(ConfigError, match=r"RandomResizedCropFlip size=0 must be >= 1"):
        RandomResizedCropFlip(0)
    with pytest.raises(ConfigError, match=r"RandomResizedCropFlip scale=\(0.5, 0.2\) must satisfy 0 < low <= high <= 1"):
        RandomResizedCropFlip(8, scale=(0.5, 0.2))
    with pytest.raises(ConfigError, match=r"RandomResizedCropFlip ratio=\(0, 1\) must satisfy 0 < low <= high"):
        RandomResizedCropFlip(8, ratio=(0, 1))
    with pytest.raises(ConfigError, match=r"RandomResizedCropFlip p=2 must be in \[0, 1\]"):
        RandomResizedCropFlip(8, p=2)


# -- uint8 output ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("c", "size", "m"), [(3, (20, 17), 2), (1, (40, 33), 0)])
def test_uint8_resized_crop_is_the_float_crop_rounded(c: int, size: tuple[int, int], m: int) -> None:
    bases, comps = _factors(c, 24, 31, m, torch.float16)
    b = 24
    bi = torch.randint(0, 6, (b,), generator=_gen(1))
    ci = torch.randint(-1, comps.shape[0], (b,), generator=_gen(2)) if comps is not None else torch.full((b,), -1)
    boxes, flip = aug.resized_crop_boxes(b, (24, 31), generator=_gen(3)), aug.flip_mask(b, generator=_gen(4))
    want = aug.resized_crop_factors(bases, bi, comps, ci, boxes, size, flip=flip).mul(255)
    got = aug.resized_crop_factors(bases, bi, comps, ci, boxes, size, flip=flip, dtype=torch.uint8)
    assert got.dtype == torch.uint8 and got.shape == (b, c, *size)
    diff = (got.float() - want).abs()
    assert float(diff.max()) <= 0.5 + 1e-3  # nearest integer (ties may go either way)
    ref = _composed(bases, comps, bi, ci)
    assert torch.equal(aug.resized_crop(ref, boxes, size, flip=flip, dtype=torch.uint8), got)  # composed-batch path


def test_uint8_full_box_is_the_composite_rounded() -> None:
    bases, comps = _factors(3, 10, 14, 1, torch.float32)
    bi, ci = torch.tensor([0, 5, 2]), torch.tensor([0, -1, 2])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 14.0]]).repeat(3, 1)
    got = aug.resized_crop_factors(bases, bi, comps, ci, boxes, (10, 14), dtype=torch.uint8)
    assert torch.equal(got, _composed(bases, comps, bi, ci).mul(255).round().to(torch.uint8))
    assert torch.equal(got[1], bases[5])  # a base alone comes back exactly


def test_normalize_uint8_matches_float_normalization() -> None:
    from infer_data.transforms import normalize_uint8

    x = torch.randint(0, 256, (4, 3, 5, 6), dtype=torch.uint8, generator=_gen(7))
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    want = (x.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(normalize_uint8(x, mean, std), want)
    half = normalize_uint8(x[0], mean, std, dtype=torch.float16)
    assert half.dtype == torch.float16 and torch.allclose(half.float(), want[0], atol=2e-3)
    with pytest.raises(ConfigError, match=r"normalize_uint8 needs a uint8 \(B, C, H, W\) or \(C, H, W\) tensor, got torch.float32"):
        normalize_uint8(x.float(), mean, std)
    with pytest.raises(ConfigError, match=r"normalize_uint8 mean and std need 3 entries \(one per channel\), got \(2,\)"):
        normalize_uint8(x, mean[:2], std)


def test_uint8_output_errors() -> None:
    from infer_data.transforms import RandomResizedCropFlip

    bases, comps = _factors(3, 10, 10, 1, torch.float32)
    bi, ci, good = torch.tensor([0, 1]), torch.tensor([0, -1]), torch.tensor([[0.0, 0.0, 5.0, 5.0], [2.0, 2.0, 8.0, 8.0]])
    with pytest.raises(ConfigError, match=r"dtype=torch.uint8 output cannot be normalized; normalize on the device"):
        aug.resized_crop_factors(bases, bi, comps, ci, good, (8, 8), mean=torch.zeros(3), dtype=torch.uint8)
    with pytest.raises(ConfigError, match=r"dtype=torch.float16 is not supported; use torch.float32 or torch.uint8"):
        aug.resized_crop_factors(bases, bi, comps, ci, good, (8, 8), dtype=torch.float16)
    with pytest.raises(ConfigError, match=r"out must be a contiguous uint8 tensor of shape \(2, 3, 8, 8\), got torch.float32"):
        aug.resized_crop_factors(bases, bi, comps, ci, good, (8, 8), out=torch.empty(2, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(ConfigError, match=r"RandomResizedCropFlip dtype=torch.uint8 needs torch.float32, or torch.uint8 without mean/std"):
        RandomResizedCropFlip(8, mean=[0.5] * 3, std=[0.2] * 3, dtype=torch.uint8)
