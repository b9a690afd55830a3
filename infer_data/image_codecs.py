"""Image base codecs: a group's K base images as stacked PNG (lossless), JPEG or WebP members.

Registered in :data:`infer_data.codecs.CODECS` as ``base/png``, ``base/jpeg`` and ``base/webp``.
Images are stacked vertically, slot k in its own band of rows, so small images share one member
and the per-member tar overhead stays out of them. A stack is cut every ``stack`` images into
several members (``base.000.jpg``, ``base.001.jpg``, ...) so that no member exceeds the image
format's largest side; ``stack`` absent (``None``) means the whole group in one member
``base.{ext}``, the only layout of format 1.0. Writers pick ``stack`` with :meth:`for_shape`.
Members of a group are encoded and decoded in a small thread pool (Pillow releases the GIL);
each member is encoded on its own, so the bytes do not depend on the number of threads.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from .codecs import CODECS, Members, _take
from .constants import STACK_ROWS
from .errors import CodecError, FormatError
from .imageheaders import check_image_header

T = TypeVar("T")
R = TypeVar("R")
MAX_CODEC_THREADS = 8  # threads per group encode/decode, at most one per member


def parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]`` in up to :data:`MAX_CODEC_THREADS` threads, results in order."""
    workers = min(len(items), MAX_CODEC_THREADS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="infer-codec") as pool:
        return list(pool.map(fn, items))


@dataclass
class _ImageCodec:
    """A group's K images in ``ceil(K / stack)`` image files, each a vertical stack.

    Member i holds slots ``i * stack`` to ``min((i + 1) * stack, K) - 1``; slot k occupies rows
    ``(k - i * stack) * T`` to ``... + H - 1`` of it, where the tile height T is H rounded up to
    ``tile_multiple`` (rows below H repeat the last row), so a block-based lossy codec never
    mixes two images in one block. One member is named ``base.{ext}``; several are named
    ``base.{i:03d}.{ext}`` (wider when there are more than 1000), so they sort in slot order.
    """

    stack: int | None = None  # images per member; None: the whole group in one member
    ext = ""
    label = ""  # the image format's name in messages
    tile_multiple = 1
    max_side = 2**31 - 1  # the image format's largest width or height in pixels, kept with a margin

    def __post_init__(self) -> None:
        if self.stack is not None and (isinstance(self.stack, bool) or not isinstance(self.stack, int) or self.stack < 1):
            raise ValueError(f"stack must be a positive number of images or null, got {self.stack!r}")

    # -- layout ----------------------------------------------------------------------------

    def tile_height(self, h: int) -> int:
        """Rows per slot in a stacked image."""
        return -(-h // self.tile_multiple) * self.tile_multiple

    def counts(self, k: int) -> list[int]:
        """Images per member, in member order, for a group of ``k`` images."""
        n = k if self.stack is None else min(self.stack, k)
        return [min(n, k - s) for s in range(0, k, max(n, 1))] or [0]

    def member_names(self, shape: tuple[int, ...]) -> list[str]:
        """``[base.{ext}]`` for one member, else ``base.000.{ext}``, ``base.001.{ext}``, ... (sorted)."""
        m = len(self.counts(shape[0]))
        if m == 1:
            return [f"base.{self.ext}"]
        width = max(3, len(str(m - 1)))
        return [f"base.{i:0{width}d}.{self.ext}" for i in range(m)]

    def max_member_bytes(self, suffix: str, shape: tuple[int, ...]) -> int:
        """Twice the raw pixels of the member's stacked image plus 64 KiB; 0 for a foreign suffix."""
        k, c, h, w = shape
        rows = dict(zip(self.member_names(shape), self.counts(k))).get(suffix, 0) * self.tile_height(h)
        return 2 * rows * c * w + 65536 if rows else 0

    def for_shape(self, shape: tuple[int, ...]) -> _ImageCodec:
        """This codec with ``stack`` chosen for groups of ``shape`` = (K, C, H, W), as writers use it.

        Without an explicit ``stack``: ``floor(STACK_ROWS / T)`` images per member (at least 1),
        or None when the whole group fits in one member. An explicit ``stack`` is kept (None
        when it covers the group) after checking that its members fit the format.

        Raises:
            CodecError: an image, or a member of the explicit ``stack``, larger than the format allows.
        """
        k, _, h, w = shape
        t = self._check_image(h, w)
        rows = min(STACK_ROWS, self.max_side)
        n = min(k, self.stack if self.stack is not None else max(1, rows // t))
        if n * t > self.max_side:
            raise CodecError(f"codec base/{self.spec()['name']}: stack {n} makes members {n * t} rows tall, past {self.label}'s "
                             f"{self.max_side}-pixel limit; use stack <= {self.max_side // t}")
        return replace(self, stack=None if n == k else n)

    def _check_image(self, h: int, w: int) -> int:
        """The tile height of an H x W image, after checking it fits the format at all."""
        t = self.tile_height(h)
        if max(t, w) > self.max_side:
            raise CodecError(f"codec base/{self.spec()['name']}: images of {h} x {w} pixels exceed {self.label}'s limit of "
                             f"{self.max_side} pixels per side; store these bases with codec png or npy")
        return t

    def _spans(self, k: int) -> list[tuple[int, int]]:
        """``(first slot, slots)`` per member."""
        counts = self.counts(k)
        return [(sum(counts[:i]), n) for i, n in enumerate(counts)]

    # -- encoding --------------------------------------------------------------------------

    def encode(self, arr: np.ndarray) -> Members:
        """uint8 (K, C, H, W) -> one image member per stack.

        Raises:
            CodecError: a member would exceed the format's largest side (choose ``stack`` with
                :meth:`for_shape`).
        """
        k, c, h, w = arr.shape
        t = self._check_image(h, w)
        if max(self.counts(k)) * t > self.max_side:
            n = max(self.counts(k))
            raise CodecError(f"codec base/{self.spec()['name']}: {n} stacked images are {n * t} rows, past {self.label}'s "
                             f"{self.max_side}-pixel limit; set a stack of at most {self.max_side // t} (ShardWriter picks one)")

        def one(span: tuple[int, int]) -> bytes:
            tiles = arr[span[0] : span[0] + span[1]]  # (n, C, H, W)
            if t > h:
                tiles = np.concatenate([tiles, np.repeat(tiles[:, :, -1:], t - h, axis=2)], axis=2)  # (n, C, T, W)
            hwc = np.ascontiguousarray(tiles.transpose(0, 2, 3, 1).reshape(span[1] * t, w, c))  # (n*T, W, C)
            buf = io.BytesIO()
            self._save(hwc, buf)
            return buf.getvalue()

        return dict(zip(self.member_names(arr.shape), parallel_map(one, self._spans(k))))

    def _save(self, hwc: np.ndarray, buf: io.BytesIO) -> None:
        """Write one stacked uint8 (rows, W, C) image to ``buf``."""
        raise NotImplementedError

    # -- decoding --------------------------------------------------------------------------

    def decode(self, members: Members, shape: tuple[int, ...], where: str) -> np.ndarray:
        """Members -> uint8 (K, C, H, W), each member's size checked before its pixels are decoded."""
        k, c, h, w = shape
        t = self.tile_height(h)
        out = np.empty(shape, np.uint8)

        def one(job: tuple[str, tuple[int, int]]) -> None:
            suffix, (first, n) = job
            chw = self._load(_take(members, suffix, where), (c, n * t, w), f"{where} member '{suffix}'")  # (C, n*T, W)
            out[first : first + n] = chw.reshape(c, n, t, w)[:, :, :h].transpose(1, 0, 2, 3)

        parallel_map(one, list(zip(self.member_names(shape), self._spans(k))))
        return out

    def _load(self, data: bytes, chw: tuple[int, int, int], where: str) -> np.ndarray:
        return decode_image(data, chw, where, self.ext)


def decode_image(data: bytes, chw: tuple[int, ...], where: str, ext: str = "png") -> np.ndarray:
    """PNG/JPEG/WebP bytes (format ``ext``: ``png``, ``jpg``, ``webp``) -> uint8 C x H x W.

    The format (magic bytes), size and channels in the header are checked against ``chw`` before
    Pillow sees the bytes (:func:`infer_data.imageheaders.check_image_header`); the bytes are then
    opened with that format's own Pillow class only, so no other decoder is ever tried and no
    process-global Pillow limit is read or changed.

    Raises:
        CodecError: bytes of another format, or undecodable.
        FormatError: an image of another size or channel count than declared.
    """
    c, h, w = chw
    check_image_header(data, ext, (c, h, w), where)
    try:
        with _IMAGE_CLASSES[ext]()(io.BytesIO(data)) as pil:
            if pil.size != (w, h):
                raise FormatError(f"{where}: image is {pil.size[0]}x{pil.size[1]}, the index declares {w}x{h}")
            want = "L" if c == 1 else "RGB"
            if pil.mode != want:
                raise FormatError(f"{where}: image mode {pil.mode}, expected {want} for C={c}")
            hwc = np.asarray(pil, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError, ZeroDivisionError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise CodecError(f"{where}: cannot decode image ({' '.join(str(exc).split())[:160] or type(exc).__name__}); "
                         "re-download the shard") from None
    if hwc.shape != ((h, w) if c == 1 else (h, w, c)):
        raise FormatError(f"{where}: decoded to shape {hwc.shape}, the index declares {c}x{h}x{w}")
    return hwc[None] if c == 1 else hwc.transpose(2, 0, 1)


def _png_class() -> Any:
    from PIL import PngImagePlugin

    return PngImagePlugin.PngImageFile


def _jpeg_class() -> Any:
    from PIL import JpegImagePlugin

    return JpegImagePlugin.JpegImageFile


def _webp_class() -> Any:
    from PIL import WebPImagePlugin

    return WebPImagePlugin.WebPImageFile


_IMAGE_CLASSES: dict[str, Callable[[], Any]] = {"png": _png_class, "jpg": _jpeg_class, "webp": _webp_class}


def _pil(hwc: np.ndarray) -> Any:
    """uint8 (rows, W, C) -> a PIL image of mode L (C=1) or RGB (C=3)."""
    from PIL import Image

    return Image.fromarray(hwc[:, :, 0], mode="L") if hwc.shape[2] == 1 else Image.fromarray(hwc, mode="RGB")


@CODECS.register("base/png")
@dataclass
class BasePng(_ImageCodec):
    """Lossless: 8-bit PNG members (grayscale or RGB) holding the group's images stacked vertically."""

    compress_level: int = 6
    ext, label = "png", "PNG"
    primary = "compress_level"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= int(self.compress_level) <= 9:
            raise ValueError(f"compress_level must be in 0..9, got {self.compress_level}")

    def spec(self) -> dict[str, Any]:
        return {"name": "png", "compress_level": self.compress_level, **_stack_spec(self)}

    def _save(self, hwc: np.ndarray, buf: io.BytesIO) -> None:
        _pil(hwc).save(buf, format="PNG", compress_level=int(self.compress_level))


@CODECS.register("base/jpeg")
@dataclass
class BaseJpeg(_ImageCodec):
    """Lossy: baseline JPEG members at ``quality`` (1..100), images stacked in 16-row-aligned tiles."""

    quality: int = 90
    ext, label = "jpg", "JPEG"
    primary = "quality"
    tile_multiple = 16
    max_side = 65_500  # libjpeg's JPEG_MAX_DIMENSION, below the format's 65,535

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= int(self.quality) <= 100:
            raise ValueError(f"quality must be in 1..100, got {self.quality}")

    def spec(self) -> dict[str, Any]:
        return {"name": "jpeg", "quality": self.quality, **_stack_spec(self)}

    def _save(self, hwc: np.ndarray, buf: io.BytesIO) -> None:
        _pil(hwc).save(buf, format="JPEG", quality=int(self.quality))


@CODECS.register("base/webp")
@dataclass
class BaseWebp(_ImageCodec):
    """WebP members: lossy at ``quality`` (1..100) in 16-row-aligned tiles, or ``lossless``.

    WebP has no grayscale mode: C=1 images are stored as RGB with equal channels and read back
    as their first channel.
    """

    quality: int = 90
    lossless: bool = False
    ext, label = "webp", "WebP"
    primary = "quality"
    max_side = 16_383  # WebP's largest side

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= int(self.quality) <= 100:
            raise ValueError(f"quality must be in 1..100, got {self.quality}")
        if not isinstance(self.lossless, bool):
            raise ValueError(f"lossless must be true or false, got {self.lossless!r}")

    @property  # type: ignore[override]
    def tile_multiple(self) -> int:  # type: ignore[override]
        """16-row tiles for lossy WebP (its macroblocks), none needed for lossless."""
        return 1 if self.lossless else 16

    def spec(self) -> dict[str, Any]:
        return {"name": "webp", "quality": self.quality, "lossless": self.lossless, **_stack_spec(self)}

    def _save(self, hwc: np.ndarray, buf: io.BytesIO) -> None:
        rgb = np.repeat(hwc, 3, axis=2) if hwc.shape[2] == 1 else hwc
        _pil(rgb).save(buf, format="WEBP", quality=int(self.quality), lossless=self.lossless, method=4)

    def _load(self, data: bytes, chw: tuple[int, int, int], where: str) -> np.ndarray:
        if chw[0] == 1:
            return decode_image(data, (3, *chw[1:]), where, self.ext)[:1]
        return decode_image(data, chw, where, self.ext)


def _stack_spec(codec: _ImageCodec) -> dict[str, Any]:
    """``{"stack": n}`` when the group is cut into several members, else nothing (the 1.0 layout)."""
    return {} if codec.stack is None else {"stack": codec.stack}
