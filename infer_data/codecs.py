"""Field codecs: how base images, compensators and labels become tar members, in a registry.

Every codec is registered under ``(field, name)`` and created from the spec dict the index
records (``{"name": "jpeg", "quality": 90}``). ``encode`` returns member suffixes and bytes;
``decode`` takes the group's members and returns the field's array, never reading more bytes
than the declared shape allows. Arrays are ``.npy`` (``allow_pickle=False``), optionally zstd
compressed per member (``.npy.zst``). There is no pickle codec.
"""

from __future__ import annotations

import io
import math
import tokenize
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

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


def create_codec(field_name: str, spec: dict[str, Any] | str, *, base_shape: tuple[int, ...] | None = None) -> FieldCodec:
    """Build the codec for ``field_name`` from an index spec or a bare name.

    Args:
        base_shape: (K, C, H, W) of a group's bases, given when writing: codecs whose layout
            depends on it (the image codecs' ``stack``) resolve it, so ``spec()`` records it.
            Readers leave it out and take the layout from the spec.

    Raises:
        RegistryError: unknown field or codec name, listing the supported ones.
        CodecError: a parameter the codec does not accept, or images the codec cannot store.
    """
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = spec.pop("name", None)
    cls = CODECS.get(f"{field_name}/{name}")
    try:
        codec = cls(**spec)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"codec {field_name}/{name}: bad parameters {spec} ({exc})") from exc
    if base_shape is not None and hasattr(codec, "for_shape"):
        codec = codec.for_shape(tuple(base_shape))
    return codec  # type: ignore[no-any-return]


def parse_codec(field_name: str, text: str) -> dict[str, Any]:
    """``"name"`` or ``"name:value"`` -> codec spec; the value sets the codec's main parameter.

    Main parameters: jpeg and webp ``quality``, topk ``k``, png ``compress_level``, the .npy codecs
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

    The header is parsed and compared with the declared dtype and shape before any array is
    allocated; the payload must be exactly the declared number of bytes. Nothing else numpy can
    load (``.npz`` archives, pickles, Fortran order) is accepted.

    Raises:
        CodecError: corrupt or oversized data, or not a plain ``.npy`` array.
        FormatError: a dtype or shape other than declared.
    """
    want = np.dtype(dtype)
    payload = math.prod(shape) * want.itemsize
    bound = payload + NPY_HEADER_ALLOWANCE
    if compressed:
        data = decompress_bounded(data, bound, where)
    elif len(data) > bound:
        raise CodecError(f"{where}: {len(data)} bytes, more than the {bound} its declared shape allows")
    got_shape, fortran, got_dtype, offset = _npy_header(data, where)
    if got_dtype != want or got_shape != tuple(shape) or any(type(n) is not int for n in got_shape):
        raise FormatError(f"{where}: holds {got_dtype} {got_shape} but the index declares {want.name} {tuple(shape)}")
    if fortran and len(shape) > 1:
        raise CodecError(f"{where}: a Fortran-ordered .npy array; the shard was not written by infer-data")
    if len(data) - offset != payload:
        raise CodecError(f"{where}: {len(data) - offset} bytes of array data, the declared shape needs {payload}; re-download the shard")
    return np.frombuffer(data, dtype=want, count=math.prod(shape), offset=offset).reshape(shape).copy()


def _npy_header(data: bytes, where: str) -> tuple[tuple[Any, ...], bool, np.dtype[Any], int]:
    """``(shape, fortran_order, dtype, data offset)`` from a ``.npy`` header (versions 1.0 to 3.0).

    Raises:
        CodecError: not a ``.npy`` header, or one describing an object or structured dtype.
    """
    fh = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fh)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran, dtype = read(fh, max_header_size=NPY_HEADER_ALLOWANCE)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, KeyError, IndexError, OverflowError, RecursionError,
            tokenize.TokenError) as exc:  # numpy parses the header with tokenize and ast
        raise CodecError(f"{where}: not a valid .npy array ({' '.join(str(exc).split())[:160]}); re-download the shard") from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise CodecError(f"{where}: a .npy array of dtype {dtype}, which infer-data never writes; refusing it")
    return tuple(shape), bool(fortran), dtype, fh.tell()


def check_finite(arr: np.ndarray, where: str) -> np.ndarray:
    """``arr`` unchanged if every value is finite.

    Raises:
        FormatError: a NaN or infinite value, naming ``where``.
    """
    if arr.size and not np.isfinite(arr).all():
        raise FormatError(f"{where}: holds NaN or infinite values; the shard is corrupt, re-download or rewrite it")
    return arr


def _take(members: Members, suffix: str, where: str) -> bytes:
    if suffix not in members:
        raise FormatError(f"{where}: missing member '{suffix}'; the shard is incomplete, re-download or rewrite it")
    return members[suffix]


@dataclass
class _NpyCodec:
    """Shared parts of the .npy codecs: members ``stem.npy[.zst]``, spec, bounded reads."""

    zstd_level: int | None = DEFAULT_ZSTD_LEVEL
    name = ""
    stem = ""
    primary = "zstd_level"

    def _suffix(self) -> str:
        return npy_suffix(self.stem, self.zstd_level)

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "zstd_level": self.zstd_level}

    def member_names(self, shape: tuple[int, ...]) -> list[str]:
        return [self._suffix()]

    def max_member_bytes(self, suffix: str, shape: tuple[int, ...]) -> int:
        return int(np.prod(shape)) * 4 + 2 * NPY_HEADER_ALLOWANCE + int(np.prod(shape)) // 64

    def _read(self, members: Members, shape: tuple[int, ...], where: str, dtype: Any) -> np.ndarray:
        s = self._suffix()
        return decode_npy(_take(members, s, where), compressed=self.zstd_level is not None,
                          dtype=dtype, shape=shape, where=f"{where} member '{s}'")


@dataclass
class _ArrayCodec(_NpyCodec):
    """One array of a fixed dtype in one member."""

    dtype: ClassVar[Any] = None

    def encode(self, arr: np.ndarray) -> Members:
        return {self._suffix(): encode_npy(arr.astype(self.dtype, copy=False), self.zstd_level)}

    def decode(self, members: Members, shape: tuple[int, ...], where: str) -> np.ndarray:
        arr = self._read(members, shape, where, self.dtype)
        return check_finite(arr, f"{where} member '{self._suffix()}'") if arr.dtype.kind == "f" else arr


# --- base images ----------------------------------------------------------------------------


@CODECS.register("base/npy")
@dataclass
class BaseNpy(_ArrayCodec):
    """Lossless: the uint8 array K x C x H x W as one ``base.npy`` (``.zst`` by default)."""

    name, stem, dtype = "npy", "base", np.uint8


# --- compensators ---------------------------------------------------------------------------


@CODECS.register("compensators/fp16")
@dataclass
class CompFp16(_ArrayCodec):
    """M x C x H x W deltas as float16 in ``comp.npy[.zst]``."""

    name, stem, dtype = "fp16", "comp", np.float16


@CODECS.register("compensators/int8")
@dataclass
class CompInt8(_NpyCodec):
    """Symmetric int8 per compensator: ``u = q * scale[m]``, ``scale = max|u| / 127``.

    Members: ``comp.npy[.zst]`` int8 M x C x H x W and ``comp_scale.npy`` float32 (M,).
    """

    name, stem = "int8", "comp"

    def member_names(self, shape: tuple[int, ...]) -> list[str]:
        return sorted([self._suffix(), "comp_scale.npy"])

    def encode(self, arr: np.ndarray) -> Members:
        flat = arr.reshape(arr.shape[0], -1).astype(np.float32)
        scale = (np.abs(flat).max(axis=1) / 127.0).astype(np.float32) if flat.size else np.zeros(0, np.float32)
        safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
        q = np.clip(np.rint(flat / safe[:, None]), -127, 127).astype(np.int8).reshape(arr.shape)
        return {self._suffix(): encode_npy(q, self.zstd_level), "comp_scale.npy": encode_npy(scale, None)}

    def decode(self, members: Members, shape: tuple[int, ...], where: str) -> np.ndarray:
        q = self._read(members, shape, where, np.int8)
        scale = decode_npy(_take(members, "comp_scale.npy", where), compressed=False, dtype=np.float32,
                           shape=(shape[0],), where=f"{where} member 'comp_scale.npy'")
        if not (np.isfinite(scale) & (scale >= 0)).all():
            raise FormatError(f"{where} member 'comp_scale.npy': scales must be finite and >= 0; the shard is corrupt, re-download or rewrite it")
        return (q.astype(np.float32) * scale.reshape(-1, *([1] * (len(shape) - 1)))).astype(np.float32)


# --- labels ---------------------------------------------------------------------------------


@CODECS.register("labels/fp16")
@dataclass
class LabelFp16(_ArrayCodec):
    """Dense logits K*(M+1) x NC as float16 in ``label.npy[.zst]``."""

    name, stem, dtype = "fp16", "label", np.float16


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
    name, stem, primary = "topk", "label_topk", "k"

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
        packed = self._read(members, (rows, 2 * kk + 1), where, np.uint16)
        return check_finite(decode_topk(packed, nc, where=f"{where} member '{s}'"), f"{where} member '{s}'")


def decode_topk(packed: np.ndarray, num_classes: int, *, where: str = "label_topk") -> np.ndarray:
    """Dense logits from a ``label_topk`` array (format section 3.1, labels codec ``topk``).

    Args:
        packed: uint16 (R, 2k' + 1): per row the float16 bit patterns of the k' kept logits, their
            class indices, and the float16 bit pattern of the mean of the other logits.
        num_classes: NC, the width of the dense rows.

    Returns:
        float16 (R, NC): every row filled with its mean, the kept logits at their indices.

    Raises:
        FormatError: another dtype or width, or a class index >= NC.
    """
    packed = np.asarray(packed)
    if packed.dtype != np.uint16 or packed.ndim != 2 or packed.shape[1] % 2 != 1:
        raise FormatError(f"{where}: holds {packed.dtype} {packed.shape}, expected uint16 (rows, 2k + 1) top-k labels")
    kk = packed.shape[1] // 2
    vals = packed[:, :kk].view(np.float16)  # (R, k')
    idx = packed[:, kk : 2 * kk].astype(np.int64)  # (R, k')
    if idx.size and int(idx.max()) >= num_classes:
        raise FormatError(f"{where}: label index {int(idx.max())} out of range for {num_classes} classes")
    out = np.repeat(np.ascontiguousarray(packed[:, 2 * kk :]).view(np.float16), num_classes, axis=1)  # (R, NC)
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


# The image codecs live in their own module; importing it registers them.
from . import image_codecs as _image_codecs  # noqa: E402,F401
from . import import_codecs as _import_codecs  # noqa: E402,F401
