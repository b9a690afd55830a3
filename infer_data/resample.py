"""Separable bilinear resized crops of whole batches, built straight from the stored factors.

RandomResizedCrop at ImageNet sizes is the costly part of the distilled-data read path. This
module builds each crop from only the source rows it needs: it gathers those rows (from a
memory-mapped uint8 base table, never the whole image), composes ``clamp(x / 255 + u, 0, 1)``
on them in float32, and interpolates each axis with a gather and a lerp. Bilinear taps follow
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` on the cropped image,
the same as torchvision's ``resized_crop(..., antialias=False)``. Horizontal flips only reverse
column indices; normalization is one multiply-add on the output. Work buffers are reused across
calls (:class:`Scratch`), and on the CPU the batch is processed in cache-sized blocks, where
each step runs several times faster than over a whole 224 px batch in main memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

from .errors import ConfigError
from .recycle import worker_buffer

CPU_BLOCK_BYTES = 1 << 20  # on the CPU, crops are built in blocks of about this many bytes of output rows


@contextmanager
def one_thread(device: torch.device) -> Iterator[None]:
    """Run the block with one intra-op CPU thread when ``device`` is the CPU (then restore the count).

    The blocks here are cache-sized, too small to split across threads: parallel ops on them
    mostly wait for each other, and on a busy machine a batch took up to 10x longer with 2
    threads than with 1. DataLoader workers already run with one thread.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Scratch:
    """Work buffers reused across calls, keyed by name and grown on demand (one set per process).

    Large temporaries allocated fresh on every batch cost page faults that can take longer than
    the arithmetic; buffers kept here are touched once. Pickling (to worker processes) drops
    the buffers, so each process builds its own.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A ``shape`` view of buffer ``name`` (contents undefined)."""
        n = math.prod(shape)
        t = self._buffers.get(name)
        if t is None or t.numel() < n or t.dtype != dtype or t.device != device:
            t = torch.empty(n, dtype=dtype, device=device)
            self._buffers[name] = t
        return t[:n].view(shape)

    def __getstate__(self) -> dict[str, Any]:
        return {"_buffers": {}}


@dataclass
class _Taps:
    """Source pixels and weights of a batch of separable bilinear resized crops."""

    top: torch.Tensor  # int64 (B,): first row of each crop
    height: torch.Tensor  # int64 (B,): rows in each crop
    rows: torch.Tensor  # int64 (B, 2, H'): crop rows (0..height-1) of the first and second tap
    wy: torch.Tensor  # float32 (B, H'): weight of the second row tap
    cols: torch.Tensor  # int64 (B, 2 * W'): absolute source columns, first taps then second taps
    wx: torch.Tensor  # float32 (B, W'): weight of the second column tap


def _axis_taps(length: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear taps along one axis as ``F.interpolate(align_corners=False)`` computes them.

    Output pixel d samples crop coordinate ``max((d + 0.5) * length / size - 0.5, 0)``; its
    taps are the floor of that and the next pixel, both clamped to the crop (not the image).

    Args:
        length: int64 (B,) crop length in pixels.
        size: output length.

    Returns:
        int64 (B, 2, size) crop-relative source indices and float32 (B, size) second-tap weights.
    """
    scale = length.to(torch.float32) / size  # (B,)
    d = torch.arange(size, dtype=torch.float32, device=length.device) + 0.5
    src = (d * scale[:, None] - 0.5).clamp_(min=0)  # (B, size), crop coordinates
    first = src.floor()
    weight = src - first
    last = (length - 1)[:, None]
    i0 = torch.minimum(first.long(), last)
    return torch.stack([i0, torch.minimum(i0 + 1, last)], 1), weight  # (B, 2, size), (B, size)


def _taps(boxes: torch.Tensor, size: tuple[int, int], flip: torch.Tensor | None) -> _Taps:
    """Row and column taps of boxes (B, 4) ``(top, left, height, width)``; flip reverses columns."""
    top, left, ch, cw = boxes.round().long().unbind(1)  # (B,) each
    rows, wy = _axis_taps(ch, size[0])
    cols, wx = _axis_taps(cw, size[1])  # (B, 2, W'), (B, W')
    cols = cols + left.view(-1, 1, 1)
    if flip is not None:
        mirrored = flip.view(-1, 1, 1)
        cols = torch.where(mirrored, cols.flip(2), cols)
        wx = torch.where(mirrored.view(-1, 1), wx.flip(1), wx)
    return _Taps(top, ch, rows, wy, cols.flatten(1), wx)


def _check_boxes(boxes: torch.Tensor, n: int, image: tuple[int, int]) -> None:
    """Raise ConfigError unless boxes is (n, 4) of non-empty crops inside an image of ``image`` pixels."""
    if tuple(boxes.shape) != (n, 4):
        raise ConfigError(f"boxes of shape {tuple(boxes.shape)} do not fit a batch of {n}; need (B, 4) rows (top, left, height, width)")
    if boxes.device.type != "cpu":
        return  # checking device tensors would wait for the device; boxes drawn there come from resized_crop_boxes
    top, left, h, w = boxes.round().unbind(1)
    if bool(((top < 0) | (left < 0) | (h < 1) | (w < 1) | (top + h > image[0]) | (left + w > image[1])).any()):
        raise ConfigError(f"boxes must lie inside the {image[0]}x{image[1]} image with height and width >= 1; "
                          "draw them with resized_crop_boxes")


def _output(out: torch.Tensor | None, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``out`` checked against ``shape`` and ``dtype``, or a new tensor (in shared memory inside a DataLoader worker)."""
    if out is not None:
        if tuple(out.shape) != shape or out.dtype != dtype or not out.is_contiguous():
            raise ConfigError(f"out must be a contiguous {str(dtype).removeprefix('torch.')} tensor of shape {shape}, got {out.dtype} {tuple(out.shape)}")
        return out
    if device.type == "cpu" and get_worker_info() is not None:
        # a worker's batch goes to the main process through shared memory: build it there, not copy it,
        # in a recycled buffer when the loader provides them (infer_data.recycle)
        recycled = worker_buffer(shape, dtype)
        if recycled is not None:
            return recycled
        storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
        return torch.empty(0, dtype=dtype).set_(storage, 0, shape)
    return torch.empty(shape, dtype=dtype, device=device)


def _output_unit(dtype: torch.dtype, mean: torch.Tensor | None, std: torch.Tensor | None) -> float:
    """The working unit for output ``dtype``: 1.0 for float32 ([0, 1]), 255.0 for uint8 (0..255, no normalization)."""
    if dtype == torch.float32:
        return 1.0
    if dtype != torch.uint8:
        raise ConfigError(f"dtype={dtype} is not supported; use torch.float32 or torch.uint8")
    if mean is not None or std is not None:
        raise ConfigError("dtype=torch.uint8 output cannot be normalized; normalize on the device "
                          "(infer_data.transforms.normalize_uint8) and leave mean/std unset")
    return 255.0


def _in_blocks(device: torch.device) -> bool:
    """Whether to resample in cache-sized blocks (CPU) rather than the whole batch at once (accelerators)."""
    return device.type == "cpu"


def _chunk(device: torch.device, c: int, h_out: int, w: int) -> int:
    """Samples resampled together: the whole batch on accelerators, a cache-sized block on the CPU."""
    if not _in_blocks(device):
        return 1 << 30
    return max(1, CPU_BLOCK_BYTES // (4 * c * h_out * w))


def _resample(out: torch.Tensor, src: torch.Tensor, src_idx: torch.Tensor, comps: torch.Tensor | None,
              comp_idx: torch.Tensor | None, taps: _Taps, affine: tuple[torch.Tensor, torch.Tensor] | None,
              scratch: Scratch, unit: float = 1.0) -> None:
    """:func:`_resample_blocks` with one intra-op thread on the CPU."""
    with one_thread(out.device):
        _resample_blocks(out, src, src_idx, comps, comp_idx, taps, affine, scratch, unit)


def _resample_blocks(out: torch.Tensor, src: torch.Tensor, src_idx: torch.Tensor, comps: torch.Tensor | None,
                     comp_idx: torch.Tensor | None, taps: _Taps, affine: tuple[torch.Tensor, torch.Tensor] | None,
                     scratch: Scratch, unit: float = 1.0) -> None:
    """Write the resized crops of ``src[src_idx]`` (+ ``comps[comp_idx]``) into ``out`` (B, C, H', W').

    Per block of samples: gather the crops' rows (full width), compose uint8 sources as
    ``clamp(src / 255 + comp, 0, 1) * unit`` on those rows only, then interpolate along the two
    axes, the one that shrinks the data first, and optionally apply ``x * scale + shift``. A
    uint8 ``out`` (``unit`` 255) receives the interpolated values rounded to the nearest integer.
    """
    c, h, w = src.shape[1:]
    bo, _, ho, wo = out.shape
    dev = out.device
    keep = None if comp_idx is None else (comp_idx >= 0).to(torch.float32).view(-1, 1)  # (B, 1): 0 = base alone
    heights = taps.height.tolist() if _in_blocks(dev) else None  # no device sync on accelerators
    step = _chunk(dev, c, ho, max(w, wo))
    quantize = out.dtype == torch.uint8
    for s in range(0, bo, step):
        e = min(bo, s + step)
        hs = max(heights[s:e]) if heights is not None else h
        x = _compose_rows(src, src_idx[s:e], comps, None if comp_idx is None else comp_idx[s:e],
                          None if keep is None else keep[s:e], taps.top[s:e], taps.height[s:e], hs, scratch, unit)
        x = x.view(e - s, c, hs, w)
        o = scratch.get("o", (e - s, c, ho, wo), torch.float32, dev) if quantize else out[s:e]
        if hs <= ho:  # upscale: columns first, on the fewer rows
            x = _horizontal(x, taps.cols[s:e], taps.wx[s:e], scratch.get("h", (e - s, c, hs, wo), torch.float32, dev), scratch)
            _vertical(x, taps.rows[s:e], taps.wy[s:e], o, scratch)
        else:
            x = _vertical(x, taps.rows[s:e], taps.wy[s:e], scratch.get("v", (e - s, c, ho, w), torch.float32, dev), scratch)
            _horizontal(x, taps.cols[s:e], taps.wx[s:e], o, scratch)
        if affine is not None:
            o.mul_(affine[0]).add_(affine[1])
        if quantize:
            _round_into(out[s:e], o.add_(0.5))  # o + 0.5 in [0.5, 255.5]: truncation rounds to nearest


def _round_into(dest: torch.Tensor, x: torch.Tensor) -> None:
    """Write float32 ``x`` (values in [0, 256)) truncated into uint8 ``dest`` of the same shape.

    On the CPU numpy's cast runs several times faster than ``Tensor.copy_`` for float32 to uint8
    (about 15 vs 115 microseconds for a 3 x 224 x 224 image here).
    """
    if dest.device.type == "cpu":
        np.copyto(dest.numpy(), x.numpy(), casting="unsafe")
    else:
        dest.copy_(x)


def _compose_rows(src: torch.Tensor, src_idx: torch.Tensor, comps: torch.Tensor | None, comp_idx: torch.Tensor | None,
                  keep: torch.Tensor | None, top: torch.Tensor, height: torch.Tensor, hs: int, scratch: Scratch,
                  unit: float = 1.0) -> torch.Tensor:
    """float32 (n * C * hs, W): rows top..top + hs - 1 of each crop (last row repeated past its height), composed.

    uint8 sources become ``clamp(src / 255 + comp, 0, 1) * unit``; float sources are taken as they are.
    """
    n, (c, h, w), dev = src_idx.shape[0], src.shape[1:], src.device
    chan = torch.arange(c, device=dev).view(1, c, 1)
    crop = (top.view(n, 1) + torch.minimum(torch.arange(hs, device=dev).view(1, hs), height.view(n, 1) - 1)).view(n, 1, hs)
    shape = (n * c * hs, w)
    ids = ((src_idx.view(n, 1, 1) * c + chan) * h + crop).reshape(-1)  # (n * C * hs,) rows of src.view(-1, W)
    x = torch.index_select(src.view(-1, w), 0, ids, out=scratch.get("src", shape, src.dtype, dev))
    if x.dtype != torch.float32:
        x = scratch.get("x", shape, torch.float32, dev).copy_(x)
    if comps is None or comp_idx is None or keep is None:
        return x.mul_(unit / 255) if src.dtype == torch.uint8 and unit != 255 else x
    ids = ((comp_idx.clamp(min=0).view(n, 1, 1) * c + chan) * h + crop).reshape(-1)
    u = torch.index_select(comps.view(-1, w), 0, ids, out=scratch.get("comp", shape, comps.dtype, dev))
    if u.dtype != torch.float32:
        u = scratch.get("compf", shape, torch.float32, dev).copy_(u)
    return u.view(n, -1).mul_(keep * unit).view(shape).add_(x, alpha=unit / 255).clamp_(0.0, unit)


def _vertical(x: torch.Tensor, rows: torch.Tensor, wy: torch.Tensor, out: torch.Tensor, scratch: Scratch) -> torch.Tensor:
    """Interpolate rows: x (n, C, hs, W') with crop-row taps (n, 2, H') and weights (n, H') -> out (n, C, H', W')."""
    n, c, hs, w = x.shape
    ho = rows.shape[2]
    dev = x.device
    ids = ((torch.arange(n, device=dev).view(n, 1, 1, 1) * c + torch.arange(c, device=dev).view(1, c, 1, 1)) * hs
           + rows.view(n, 1, 2, ho)).reshape(-1)  # (n * C * 2 * H',)
    xr = torch.index_select(x.reshape(-1, w), 0, ids, out=scratch.get("rows", (n * c * 2 * ho, w), torch.float32, dev))
    xr = xr.view(n, c, 2, ho, w)
    return torch.lerp(xr[:, :, 0], xr[:, :, 1], wy.view(n, 1, ho, 1), out=out)


def _horizontal(x: torch.Tensor, cols: torch.Tensor, wx: torch.Tensor, out: torch.Tensor, scratch: Scratch) -> torch.Tensor:
    """Interpolate columns: x (n, C, R, W) with taps (n, 2 * W') and weights (n, W') -> out (n, C, R, W')."""
    n, c, r, _ = x.shape
    wo = wx.shape[1]
    idx = cols.view(n, 1, 1, 2 * wo).expand(n, c, r, 2 * wo)
    hx = torch.gather(x, 3, idx, out=scratch.get("cols", (n, c, r, 2 * wo), torch.float32, x.device))  # (n, C, R, 2 W')
    return torch.lerp(hx[..., :wo], hx[..., wo:], wx.view(n, 1, 1, wo), out=out)


def _affine(mean: torch.Tensor | None, std: torch.Tensor | None, c: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Normalization ``(x - mean) / std`` as ``x * scale + shift``, each float32 (1, C, 1, 1)."""
    if mean is None and std is None:
        return None
    m = torch.zeros(c) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
    sd = torch.ones(c) if std is None else torch.as_tensor(std, dtype=torch.float32)
    scale = (1 / sd).view(1, -1, 1, 1).to(device)
    return scale, (-m.view(1, -1, 1, 1).to(device)) * scale


def resized_crop_factors(
    bases: torch.Tensor,
    base_idx: torch.Tensor,
    comps: torch.Tensor | None,
    comp_idx: torch.Tensor | None,
    boxes: torch.Tensor,
    size: tuple[int, int],
    *,
    flip: torch.Tensor | None = None,
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    scratch: Scratch | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Resized crop + flip of instances ``clamp(bases[i] / 255 + comps[j], 0, 1)`` built from the factors.

    The composite is never formed at full size: only the source rows the crops need are read
    (so a memory-mapped ``bases`` table is touched only there), composed in float32, and
    resampled with separable bilinear interpolation, the same as torchvision's
    ``resized_crop(..., antialias=False)`` (``align_corners=False``, taps clamped to the crop).
    Crops smaller than ``size`` are upscales, for which antialiasing changes nothing; crops
    larger than ``size`` are downscaled from 2 taps per output pixel and alias as
    ``antialias=False`` does. The flip only reverses column indices. On the CPU the batch is
    processed in cache-sized blocks.

    Args:
        bases: uint8 (N_b, C, H, W), contiguous (may be memory-mapped).
        base_idx: int64 (B,) rows of ``bases``.
        comps: float16/float32 (N_c, C, H, W) contiguous pixel deltas in [0, 1] units, or None.
        comp_idx: int64 (B,) rows of ``comps``, -1 for the base alone; ignored without ``comps``.
        boxes: (B, 4) ``(top, left, height, width)`` in pixels, integer-valued, inside the image
            (checked when on the CPU).
        size: output (H', W').
        flip: bool (B,) samples to mirror left-right, or None.
        mean, std: (C,) normalize the output as ``(x - mean) / std`` (None: leave in [0, 1]).
        out: ``dtype`` (B, C, H', W') to write into (default: a fresh tensor, in shared memory
            inside a DataLoader worker so it reaches the main process without a copy).
        scratch: work buffers to reuse across calls (default: fresh ones).
        dtype: ``torch.float32`` (values in [0, 1], or normalized) or ``torch.uint8`` (0..255,
            the interpolated value rounded to the nearest integer; no ``mean``/``std``): a
            quarter of the bytes to move to the main process and the device, normalized there
            with :func:`infer_data.transforms.normalize_uint8`.

    Returns:
        ``dtype`` (B, C, H', W').

    Raises:
        ConfigError: boxes outside the image, a wrong ``out`` or ``dtype``, or factors of
            different image shapes.
    """
    if bases.dtype != torch.uint8 or bases.dim() != 4:
        raise ConfigError(f"bases must be uint8 (N, C, H, W), got {bases.dtype} {tuple(bases.shape)}")
    if comps is not None and (comps.dim() != 4 or comps.shape[1:] != bases.shape[1:]):
        raise ConfigError(f"compensators {tuple(comps.shape)} do not fit bases {tuple(bases.shape)}; need (N, C, H, W)")
    if comps is not None and comp_idx is None:
        raise ConfigError("comp_idx is required with comps (-1 marks the base alone)")
    b = base_idx.shape[0]
    _check_boxes(boxes, b, (bases.shape[2], bases.shape[3]))
    unit = _output_unit(dtype, mean, std)
    dest = _output(out, (b, bases.shape[1], *size), dtype, bases.device)
    taps = _taps(boxes.to(bases.device), size, flip)
    affine = _affine(mean, std, bases.shape[1], bases.device)
    _resample(dest, bases.contiguous(), base_idx, comps if comps is None else comps.contiguous(), comp_idx, taps, affine,
              scratch or Scratch(), unit)
    return dest


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], *, flip: torch.Tensor | None = None,
                 mean: torch.Tensor | None = None, std: torch.Tensor | None = None, out: torch.Tensor | None = None,
                 scratch: Scratch | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Crop each sample to its box and resize it to ``size`` (bilinear, torchvision's antialias=False).

    Args:
        x: float (B, C, H, W), in [0, 1] when ``dtype`` is uint8.
        boxes: (B, 4) ``(top, left, height, width)`` in pixels, integer-valued, inside the image.
        size: output (H', W').
        flip: bool (B,) samples to mirror left-right after resizing, or None.
        mean, std, out, scratch, dtype: as :func:`resized_crop_factors`.

    Returns:
        ``dtype`` (B, C, H', W'); see :func:`resized_crop_factors` for the sampling rule.

    Raises:
        ConfigError: boxes outside the image or a wrong ``out`` or ``dtype``.
    """
    b = x.shape[0]
    _check_boxes(boxes, b, (x.shape[2], x.shape[3]))
    unit = _output_unit(dtype, mean, std)
    dest = _output(out, (b, x.shape[1], *size), dtype, x.device)
    src = x.to(torch.float32).contiguous() if unit == 1 else x.to(torch.float32).mul(unit)
    _resample(dest, src, torch.arange(b, device=x.device), None, None, _taps(boxes.to(x.device), size, flip),
              _affine(mean, std, x.shape[1], x.device), scratch or Scratch(), unit)
    return dest
