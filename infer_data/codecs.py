"""Field codecs: how base images, compensators and labels become tar members, in a registry.

Every codec is registered under ``(field, name)`` and created from the spec dict the index
records (``{"name": "jpeg", "quality": 90}``). ``encode`` returns member suffixes and bytes;
``decode`` takes the group's members and returns the field's array, never reading more bytes
than the declared shape allows. Arrays are ``.npy`` (``allow_pickle=False``), optionally zstd
compressed per member (``.npy.zst``). There is no pickle codec.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import zstandard

from .constants import DEFAULT_ZSTD_LEVEL, NPY_HEADER_ALLOWANCE
from .errors import CodecError, FormatError
from .registry import Registry

Members = dict[str, bytes]

FIELDS = ("base", "compensators", "labels")


class FieldCodec(Protocol):
    """The protocol every codec follows; shapes are the decoded array's shape."""

    def spec(self) -> dict[str, Any]:
        """The dict recorded in index.json (round-trips through ``create_codec``)."""

    def encode(self, arr: np.ndarray) -> Members:
        """Array -> {member suffix: bytes}."""

    def member_names(self, shape: tuple[int, ...]) -> list[str]:
        """The suffixes a group of this shape must contain, sorted."""

    def decode(self, members: Members, shape: tuple[int, ...], where: str) -> np.ndarray:
        """Members -> array of ``shape``; raises FormatError/CodecError naming ``where``."""

    def max_member_bytes(self, suffix: str, shape: tuple[int, ...]) -> int:
        """Upper bound on the stored size of member ``suffix``."""


CODECS: Registry[type] = Registry("codec")


def list_codecs(field_name: str) -> list[str]:
    """Names of the codecs registered for ``field_name``."""
    return [n.split("/", 1)[1] for n in CODECS.list(f"{field_name}/*")]


def create_codec(field_name: str, spec: dict[str, Any] | str) -> FieldCodec:
    """Build the codec for ``field_name`` from an index spec or a bare name.

    Raises:
        RegistryError: unknown field or codec name, listing the supported ones.
        CodecError: a parameter the codec does not accept.
    """
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = spec.pop("name", None)
    cls = CODECS.get(f"{field_name}/{name}")
    try:
        return cls(**spec)  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise CodecError(f"codec {field_name}/{name}: bad parameters {spec} ({exc})") from exc


def parse_codec(field_name: str, text: str) -> dict[str, Any]:
    """``"name"`` or ``"name:value"`` -> codec spec; the value sets the codec's main parameter.

    Main parameters: jpeg ``quality``, topk ``k``, png ``compress_level``, the .npy codecs
    ``zstd_level`` (``none`` = uncompressed).

    Example:
        >>> parse_codec("base", "jpeg:75"), parse_codec("labels", "topk:5")
        ({'name': 'jpeg', 'quality': 75}, {'name': 'topk', 'k': 5})

    Raises:
        RegistryError: unknown codec name.
        CodecError: a value the codec does not take.
    """
    name, _, value = text.partition(":")
    cls = CODECS.get(f"{field_name}/{name}")
    spec: dict[str, Any] = {"name": name}
    if value:
        param = getattr(cls, "primary", None)
        if param is None:
            raise CodecError(f"codec {field_name}/{name} takes no parameter, got {text!r}")
        try:
            spec[param] = None if value.lower() == "none" and param == "zstd_level" else int(value)
        except ValueError:
            raise CodecError(f"codec {text!r}: {param} must be an integer") from None
    create_codec(field_name, spec)  # validates the parameter's range
    return spec


# --- member-level helpers -------------------------------------------------------------------


def npy_suffix(stem: str, zstd_level: int | None) -> str:
    """``stem.npy`` or ``stem.npy.zst``."""
    return f"{stem}.npy" if zstd_level is None else f"{stem}.npy.zst"


def encode_npy(arr: np.ndarray, zstd_level: int | None) -> bytes:
    """Array -> .npy bytes (version 1.0 header), zstd-compressed when a level is given."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    raw = buf.getvalue()
    if zstd_level is None:
        return raw
    return zstandard.ZstdCompressor(level=zstd_level, write_checksum=True).compress(raw)


def decompress_bounded(data: bytes, bound: int, where: str) -> bytes:
    """zstd-decompress at most ``bound`` bytes.

    Raises:
        CodecError: the data is not zstd, is corrupt, or expands beyond ``bound``.
    """
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
            out = reader.read(bound + 1)
    except zstandard.ZstdError as exc:
        raise CodecError(f"{where}: zstd data is corrupt ({exc}); re-download the shard") from exc
    if len(out) > bound:
        raise CodecError(
            f"{where}: decompresses to more than the {bound} bytes its declared shape allows; the shard is corrupt or hostile"
        )
    return out


def decode_npy(data: bytes, *, compressed: bool, dtype: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    """Bytes of a ``.npy`` (or ``.npy.zst``) member -> array of exactly ``dtype`` and ``shape``.

    Raises:
        CodecError: corrupt or oversized data.
        FormatError: a dtype or shape other than declared.
    """
    bound = int(np.prod(shape)) * np.dtype(dtype).itemsize + NPY_HEADER_ALLOWANCE
    if compressed:
        data = decompress_bounded(data, bound, where)
    elif len(data) > bound:
        raise CodecError(f"{where}: {len(data)} bytes, more than the {bound} its declared shape allows")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CodecError(f"{where}: not a valid .npy array ({exc}); re-download the shard") from exc
    if arr.dtype != np.dtype(dtype) or tuple(arr.shape) != tuple(shape):
        raise FormatError(
            f"{where}: holds {arr.dtype} {tuple(arr.shape)} but the index declares {np.dtype(dtype).name} {tuple(shape)}"
        )
    return arr


def _take(members: Members, suffix: str, where: str) -> bytes:
    if suffix not in members:
        raise FormatError(f"{where}: missing member '{suffix}'; the shard is incomplete, re-download or rewrite it")
    return members[suffix]


@dataclass
class _NpyCodec:
    """Shared parts of single-array codecs: one member ``stem.npy[.zst]``."""

    zstd_level: int | None = DEFAULT_ZSTD_LEVEL
    stem = ""
    primary = "zstd_level"

    def _suffix(self) -> str:
        return npy_suffix(self.stem, self.zstd_level)

    def member_names(self, shape: tuple[int, ...]) -> list[str]:
        return [self._suffix()]

    def max_member_bytes(self, suffix: str, shape: tuple[int, ...]) -> int:
        return int(np.prod(shape)) * 4 + 2 * NPY_HEADER_ALLOWANCE + int(np.prod(shape)) // 64


# --- base images ----------------------------------------------------------------------------


@CODECS.register("base/npy")
@dataclass
class BaseNpy(_NpyCodec):
    """Lossless: the uint8 array K x C x H x W as one ``base.npy`` (``.zst`` by default)."""

    stem = "base"

    def spec(self) -> dict[str, Any]:
        return {"name": "npy", "zstd_level": self.zstd_level}

    def encode(self, arr: np.ndarray) -> Members:
        return {self._suffix(): encode_npy(arr.astype(np.uint8, copy=False), self.zstd_level)}

    def decode(self, members: Members, shape: tuple[int, ...], where: str) -> np.ndarray:
        s = self._suffix()
        return decode_npy(_take(members, s, where), compressed=self.zstd_level is not None,
                          dtype=np.uint8, shape=shape, where=f"{where} member '{s}'")


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


# --- compensators ---------------------------------------------------------------------------


@CODECS.register("compensators/fp16")
@dataclass
class CompFp16(_NpyCodec):
    """M x C x H x W deltas as float16 in ``comp.npy[.zst]``."""

    stem = "comp"

    def spec(self) -> dict[str, Any]:
        return {"name": "fp16", "zstd_level": self.zstd_level}

    def encode(self, arr: np.ndarray) -> Members:
        return {self._suffix(): encode_npy(arr.astype(np.float16), self.zstd_level)}

    def decode(self, members: Members, shape: tuple[int, ...], where: str) -> np.ndarray:
        s = self._suffix()
        return decode_npy(_take(members, s, where), compressed=self.zstd_level is not None,
                          dtype=np.float16, shape=shape, where=f"{where} member '{s}'")


@CODECS.register("compensators/int8")
@dataclass
class CompInt8(_NpyCodec):
    """Symmetric int8 per compensator: ``u = q * scale[m]``, ``scale = max|u| / 127``.

    Members: ``comp.npy[.zst]`` int8 M x C x H x W and ``comp_scale.npy`` float32 (M,).
    """

    stem = "comp"

    def spec(self) -> dict[str, Any]:
        return {"name": "int8", "zstd_level": self.zstd_level}

    def member_names(self, shape: tuple[int, ...]) -> list[str]:
        return sorted([self._suffix(), "comp_scale.npy"])

    def encode(self, arr: np.ndarray) -> Members:
        flat = arr.reshape(arr.shape[0], -1).astype(np.float32)
        scale = (np.abs(flat).max(axis=1) / 127.0).astype(np.float32) if flat.size else np.zeros(0, np.float32)
        safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
        q = np.clip(np.rint(flat / safe[:, None]), -127, 127).astype(np.int8).reshape(arr.shape)
        return {self._suffix(): encode_npy(q, self.zstd_level), "comp_scale.npy": encode_npy(scale, None)}

    def decode(self, members: Members, shape: tuple[int, ...], where: str) -> np.ndarray:
        s = self._suffix()
        q = decode_npy(_take(members, s, where), compressed=self.zstd_level is not None,
                       dtype=np.int8, shape=shape, where=f"{where} member '{s}'")
        scale = decode_npy(_take(members, "comp_scale.npy", where), compressed=False, dtype=np.float32,
                           shape=(shape[0],), where=f"{where} member 'comp_scale.npy'")
        return (q.astype(np.float32) * scale.reshape(-1, *([1] * (len(shape) - 1)))).astype(np.float32)


# --- labels ---------------------------------------------------------------------------------


@CODECS.register("labels/fp16")
@dataclass
class LabelFp16(_NpyCodec):
    """Dense logits K*(M+1) x NC as float16 in ``label.npy[.zst]``."""

    stem = "label"

    def spec(self) -> dict[str, Any]:
        return {"name": "fp16", "zstd_level": self.zstd_level}

    def encode(self, arr: np.ndarray) -> Members:
        return {self._suffix(): encode_npy(arr.astype(np.float16), self.zstd_level)}

    def decode(self, members: Members, shape: tuple[int, ...], where: str) -> np.ndarray:
        s = self._suffix()
        return decode_npy(_take(members, s, where), compressed=self.zstd_level is not None,
                          dtype=np.float16, shape=shape, where=f"{where} member '{s}'")


@CODECS.register("labels/topk")
@dataclass
class LabelTopK(_NpyCodec):
    """The k largest logits per row plus the mean of the rest, packed in one member.

    Member ``label_topk.npy[.zst]``: uint16 R x (2k' + 1), k' = min(k, NC). Per row, columns
    0..k'-1 hold the float16 bit patterns of the k' largest logits (descending), columns
    k'..2k'-1 their class indices, and the last column the float16 bit pattern of the mean of
    the other NC - k' logits. Decoding fills each row with that mean and scatters the kept
    logits. NC must be at most 65536.
    """

    k: int = 10
    stem = "label_topk"
    primary = "k"

    def __post_init__(self) -> None:
        if int(self.k) < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")

    def spec(self) -> dict[str, Any]:
        return {"name": "topk", "k": self.k, "zstd_level": self.zstd_level}

    def _kk(self, nc: int) -> int:
        return min(int(self.k), nc)

    def encode(self, arr: np.ndarray) -> Members:
        rows, nc = arr.shape
        if nc > 65536:
            raise CodecError(f"labels codec topk: {nc} classes exceed its 65536; use codec fp16")
        kk = self._kk(nc)
        a = arr.astype(np.float32)
        order = np.argsort(-a, axis=1, kind="stable")[:, :kk]  # (R, k')
        vals = np.take_along_axis(a, order, axis=1)  # (R, k')
        rest = (a.sum(axis=1) - vals.sum(axis=1)) / max(nc - kk, 1)  # (R,)
        packed = np.concatenate([vals.astype(np.float16).view(np.uint16), order.astype(np.uint16),
                                 rest.astype(np.float16).view(np.uint16)[:, None]], axis=1)  # (R, 2k'+1)
        return {self._suffix(): encode_npy(packed, self.zstd_level)}

    def decode(self, members: Members, shape: tuple[int, ...], where: str) -> np.ndarray:
        rows, nc = shape
        kk, s = self._kk(nc), self._suffix()
        packed = decode_npy(_take(members, s, where), compressed=self.zstd_level is not None,
                            dtype=np.uint16, shape=(rows, 2 * kk + 1), where=f"{where} member '{s}'")
        vals = packed[:, :kk].view(np.float16)  # (R, k')
        idx = packed[:, kk : 2 * kk].astype(np.int64)  # (R, k')
        if idx.size and int(idx.max()) >= nc:
            raise FormatError(f"{where} member '{s}': label index {int(idx.max())} out of range for {nc} classes")
        out = np.repeat(packed[:, 2 * kk :].view(np.float16), nc, axis=1)  # (R, NC)
        np.put_along_axis(out, idx, vals, axis=1)
        return out


@CODECS.register("labels/none")
@dataclass
class LabelNone:
    """No soft labels: consumers use the base image's hard class."""

    def spec(self) -> dict[str, Any]:
        return {"name": "none"}

    def encode(self, arr: np.ndarray | None) -> Members:
        return {}

    def member_names(self, shape: tuple[int, ...]) -> list[str]:
        return []

    def decode(self, members: Members, shape: tuple[int, ...], where: str) -> np.ndarray:
        raise CodecError(f"{where}: this dataset stores no soft labels (labels codec 'none'); use target='class'")

    def max_member_bytes(self, suffix: str, shape: tuple[int, ...]) -> int:
        return 0
