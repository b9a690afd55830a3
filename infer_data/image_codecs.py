"""Image base codecs: a group's K base images as one stacked PNG (lossless) or JPEG (lossy).

Registered in :data:`infer_data.codecs.CODECS` as ``base/png`` and ``base/jpeg``. Slot k of a
group occupies its own band of rows, so one member per group carries all K images and the
per-member tar overhead stays out of small images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from .codecs import CODECS, Members, _take
from .errors import CodecError, FormatError


@dataclass
class _ImageCodec:
    """All K base images of a group in one image file ``base.{ext}``, stacked vertically.

    Slot k occupies rows ``k * T`` to ``k * T + H`` of a ``K * T`` x W image, where the tile
    height T is H rounded up to ``tile_multiple`` (rows below H repeat the last row), so a
    block-based lossy codec never mixes two images in one block.
    """

    ext = ""
    tile_multiple = 1

    def member_names(self, shape: tuple[int, ...]) -> list[str]:
        return [f"base.{self.ext}"]

    def tile_height(self, h: int) -> int:
        """Rows per slot in the stacked image."""
        return -(-h // self.tile_multiple) * self.tile_multiple

    def max_member_bytes(self, suffix: str, shape: tuple[int, ...]) -> int:
        k, c, h, w = shape
        return 2 * k * c * self.tile_height(h) * w + 65536

    def encode(self, arr: np.ndarray) -> Members:
        from PIL import Image

        k, c, h, w = arr.shape
        t = self.tile_height(h)
        tiles = np.concatenate([arr, np.repeat(arr[:, :, -1:], t - h, axis=2)], axis=2) if t > h else arr  # (K, C, T, W)
        hwc = np.ascontiguousarray(tiles.transpose(0, 2, 3, 1).reshape(k * t, w, c))  # (K*T, W, C)
        pil = Image.fromarray(hwc[:, :, 0] if c == 1 else hwc, mode="L" if c == 1 else "RGB")
        buf = io.BytesIO()
        self._save(pil, buf)
        return {f"base.{self.ext}": buf.getvalue()}

    def _save(self, pil: Any, buf: io.BytesIO) -> None:
        raise NotImplementedError

    def decode(self, members: Members, shape: tuple[int, ...], where: str) -> np.ndarray:
        k, c, h, w = shape
        t = self.tile_height(h)
        suffix = f"base.{self.ext}"
        chw = decode_image(_take(members, suffix, where), (c, k * t, w), f"{where} member '{suffix}'")  # (C, K*T, W)
        return np.array(chw.reshape(c, k, t, w)[:, :, :h].transpose(1, 0, 2, 3), order="C")  # (K, C, H, W), owned


def decode_image(data: bytes, chw: tuple[int, ...], where: str) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 C x H x W, checking the size in the header before decoding.

    Raises:
        CodecError: undecodable bytes.
        FormatError: an image of another size or channel count than declared.
    """
    from PIL import Image, UnidentifiedImageError

    c, h, w = chw
    if Image.MAX_IMAGE_PIXELS is not None and h * w >= Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = h * w + 1  # the declared size is the bound; checked below
    try:
        with Image.open(io.BytesIO(data)) as pil:
            if pil.size != (w, h):
                raise FormatError(f"{where}: image is {pil.size[0]}x{pil.size[1]}, the index declares {w}x{h}")
            want = "L" if c == 1 else "RGB"
            if pil.mode != want:
                raise FormatError(f"{where}: image mode {pil.mode}, expected {want} for C={c}")
            hwc = np.asarray(pil, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise CodecError(f"{where}: cannot decode image ({exc}); re-download the shard") from exc
    return hwc[None] if c == 1 else hwc.transpose(2, 0, 1)


@CODECS.register("base/png")
@dataclass
class BasePng(_ImageCodec):
    """Lossless: one 8-bit PNG (grayscale or RGB) holding the group's K images stacked vertically."""

    compress_level: int = 9
    ext = "png"
    primary = "compress_level"

    def spec(self) -> dict[str, Any]:
        return {"name": "png", "compress_level": self.compress_level}

    def _save(self, pil: Any, buf: io.BytesIO) -> None:
        pil.save(buf, format="PNG", compress_level=self.compress_level)


@CODECS.register("base/jpeg")
@dataclass
class BaseJpeg(_ImageCodec):
    """Lossy: one baseline JPEG at ``quality`` (1..100), the K images stacked in 16-row-aligned tiles."""

    quality: int = 90
    ext = "jpg"
    primary = "quality"
    tile_multiple = 16

    def __post_init__(self) -> None:
        if not 1 <= int(self.quality) <= 100:
            raise ValueError(f"quality must be in 1..100, got {self.quality}")

    def spec(self) -> dict[str, Any]:
        return {"name": "jpeg", "quality": self.quality}

    def _save(self, pil: Any, buf: io.BytesIO) -> None:
        pil.save(buf, format="JPEG", quality=int(self.quality))
