"""Codecs for sets packed from other methods' outputs (format 1.2): no compensators, image files
stored byte for byte, and per-crop soft labels.

Registered in :data:`infer_data.codecs.CODECS`:

- ``compensators/none``: M = 0, no member at all (a 1.1 writer stored an empty ``comp`` array).
- ``base/passthrough``: the K already-encoded image files of a group (``format`` ``jpeg`` or
  ``png``), concatenated in slot order into ``base_files.npy`` (uint8, the files' bytes) with
  their lengths in ``base_sizes.npy`` (uint32, K). A file's bytes in the shard are exactly the
  input file's; two members per group keep the tar framing out of small images.
- ``labels/crops``: R crops per instance, each with its own box, flip and soft label:
  ``crop_box.npy`` float32 (rows, R, 5) = top, left, height, width as fractions of the image
  side and flip (0 or 1), and ``crop_label.npy[.zst]`` float16 (rows, R, NC) logits. A reader
  asking for one label row per instance gets the mean of its R crop logits.

Writers hand the files and crops over in ``GroupRecord.base_files`` and ``GroupRecord.crops``;
each codec's ``source`` names the record field it encodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .codecs import CODECS, Members, _NpyCodec, _take, check_finite, decode_npy, encode_npy
from .constants import NPY_HEADER_ALLOWANCE
from .errors import CodecError, FormatError
from .image_codecs import decode_image, parallel_map
from .imageheaders import check_image_header

FILE_ALLOWANCE = 65_536  # bytes a stored image file may take beyond 2 * C * H * W (metadata, headers)
CROP_FIELDS = 5  # top, left, height, width (fractions of the image side), flip (0 or 1)


# (field, codec name) pairs that need a format 1.2 reader
MINOR_2_CODECS = {("compensators", "none"), ("base", "passthrough"), ("labels", "crops")}


def format_minor(codecs: dict[str, dict[str, Any]]) -> int:
    """The minor version a set with these codec specs is written as: 2 if it uses a 1.2 codec, else 1."""
    return 2 if any((f, spec.get("name")) in MINOR_2_CODECS for f, spec in codecs.items()) else 1


@CODECS.register("compensators/none")
@dataclass
class CompNone:
    """M = 0: no compensator member; decodes to an empty (0, C, H, W) array."""

    def spec(self) -> dict[str, Any]:
        return {"name": "none"}

    def encode(self, arr: np.ndarray) -> Members:
        if arr.shape[0] != 0:
            raise FormatError(f"compensators codec 'none' stores no compensators, got {arr.shape[0]}; use fp16 or int8 for M > 0")
        return {}

    def member_names(self, shape: tuple[int, ...]) -> list[str]:
        return []

    def decode(self, members: Members, shape: tuple[int, ...], where: str) -> np.ndarray:
        if shape[0] != 0:
            raise FormatError(f"{where}: compensators codec 'none' with M={shape[0]}; the index is inconsistent, rewrite it")
        return np.zeros(shape, np.float32)

    def max_member_bytes(self, suffix: str, shape: tuple[int, ...]) -> int:
        return 0


@CODECS.register("base/passthrough")
@dataclass
class BasePassthrough:
    """Image files stored as given (see the module docstring); ``format`` is ``jpeg`` or ``png``."""

    format: str = "jpeg"
    source: ClassVar[str] = "base_files"
    EXT: ClassVar[dict[str, str]] = {"jpeg": "jpg", "png": "png"}

    def __post_init__(self) -> None:
        if self.format not in self.EXT:
            raise ValueError(f"format must be one of {', '.join(self.EXT)}, got {self.format!r}")

    def spec(self) -> dict[str, Any]:
        return {"name": "passthrough", "format": self.format}

    @property
    def ext(self) -> str:
        """File extension of the stored files (``jpg`` or ``png``)."""
        return self.EXT[self.format]

    def file_bound(self, chw: tuple[int, ...]) -> int:
        """Largest stored file for one image of ``chw``, in bytes."""
        return 2 * int(np.prod(chw)) + FILE_ALLOWANCE

    def for_shape(self, shape: tuple[int, ...]) -> BasePassthrough:
        """The codec for groups of ``shape`` (K, C, H, W): the writer's files are checked against it."""
        self.chw = tuple(shape[1:])
        return self

    def encode(self, files: list[bytes] | None) -> Members:
        """The two members of a group whose images are ``files`` (from ``GroupRecord.base_files``).

        Raises:
            CodecError, FormatError: no files, a file of another format or size, or larger than the bound.
        """
        chw = getattr(self, "chw", None)
        if files is None or chw is None:
            raise FormatError("base codec 'passthrough' stores image files as given; pass them in GroupRecord.base_files")
        for i, data in enumerate(files):
            check_image_header(data, self.ext, chw, f"file {i} of the group")
            if len(data) > self.file_bound(chw):
                raise CodecError(f"file {i} of the group: {len(data)} bytes, more than the {self.file_bound(chw)} a "
                                 f"{'x'.join(map(str, chw))} image may take; re-encode it")
        sizes = np.array([len(f) for f in files], dtype=np.uint32)
        blob = np.frombuffer(b"".join(files), dtype=np.uint8)
        return {"base_files.npy": encode_npy(blob, None), "base_sizes.npy": encode_npy(sizes, None)}

    def member_names(self, shape: tuple[int, ...]) -> list[str]:
        return ["base_files.npy", "base_sizes.npy"]

    def max_member_bytes(self, suffix: str, shape: tuple[int, ...]) -> int:
        k = shape[0]
        return 4 * k + NPY_HEADER_ALLOWANCE if suffix == "base_sizes.npy" else k * self.file_bound(shape[1:]) + NPY_HEADER_ALLOWANCE

    def files(self, members: Members, shape: tuple[int, ...], where: str) -> list[bytes]:
        """The K stored files of a group, byte for byte.

        Raises:
            CodecError, FormatError: malformed members or lengths beyond the bound.
        """
        k = shape[0]
        sizes = decode_npy(_take(members, "base_sizes.npy", where), compressed=False, dtype=np.uint32, shape=(k,),
                           where=f"{where} member 'base_sizes.npy'").astype(np.int64)
        if int(sizes.max(initial=0)) > self.file_bound(shape[1:]):
            raise FormatError(f"{where} member 'base_sizes.npy': a file of {int(sizes.max())} bytes, above the "
                              f"{self.file_bound(shape[1:])} allowed; the shard is corrupt")
        blob = decode_npy(_take(members, "base_files.npy", where), compressed=False, dtype=np.uint8,
                          shape=(int(sizes.sum()),), where=f"{where} member 'base_files.npy'")
        ends = np.cumsum(sizes)
        return [blob[e - n : e].tobytes() for e, n in zip(ends.tolist(), sizes.tolist())]

    def decode(self, members: Members, shape: tuple[int, ...], where: str) -> np.ndarray:
        files = self.files(members, shape, where)
        chw = tuple(shape[1:])
        return np.stack(parallel_map(lambda j: decode_image(files[j], chw, f"{where} file {j}", self.ext), range(len(files))))


@CODECS.register("labels/crops")
@dataclass
class LabelCrops(_NpyCodec):
    """R crops per instance: boxes + flips (float32) and soft labels (float16); see the module docstring."""

    crops: int = 1
    name = "crops"
    stem = "crop_label"
    primary = "crops"
    source: ClassVar[str] = "crops"

    def __post_init__(self) -> None:
        if type(self.crops) is not int or not 1 <= self.crops <= 4096:
            raise ValueError(f"crops must be an integer in 1..4096, got {self.crops!r}")

    def spec(self) -> dict[str, Any]:
        return {"name": "crops", "crops": self.crops, "zstd_level": self.zstd_level}

    def member_names(self, shape: tuple[int, ...]) -> list[str]:
        return sorted(["crop_box.npy", self._suffix()])

    def max_member_bytes(self, suffix: str, shape: tuple[int, ...]) -> int:
        rows, nc = shape
        return super().max_member_bytes(suffix, (rows, self.crops, CROP_FIELDS if suffix == "crop_box.npy" else nc))

    def encode(self, arr: np.ndarray) -> Members:
        """``arr``: float32 (rows, R, 5 + NC), boxes and flips then logits per crop."""
        if arr.ndim != 3 or arr.shape[1] != self.crops or arr.shape[2] <= CROP_FIELDS:
            raise FormatError(f"crops: expected (rows, {self.crops}, 5 + classes), got {tuple(arr.shape)}")
        boxes = np.ascontiguousarray(arr[:, :, :CROP_FIELDS], dtype=np.float32)
        check_boxes(boxes, "crops")
        return {"crop_box.npy": encode_npy(boxes, None),
                self._suffix(): encode_npy(arr[:, :, CROP_FIELDS:].astype(np.float16), self.zstd_level)}

    def decode_crops(self, members: Members, shape: tuple[int, ...], where: str) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes float32 (rows, R, 5), logits float16 (rows, R, NC))`` of a group."""
        rows, nc = shape
        boxes = decode_npy(_take(members, "crop_box.npy", where), compressed=False, dtype=np.float32,
                           shape=(rows, self.crops, CROP_FIELDS), where=f"{where} member 'crop_box.npy'")
        check_boxes(boxes, f"{where} member 'crop_box.npy'")
        logits = check_finite(self._read(members, (rows, self.crops, nc), where, np.float16), f"{where} member '{self._suffix()}'")
        return boxes, logits

    def decode(self, members: Members, shape: tuple[int, ...], where: str) -> np.ndarray:
        """One row per instance: the mean of its crops' logits, float16 (rows, NC)."""
        return self.decode_crops(members, shape, where)[1].astype(np.float32).mean(axis=1).astype(np.float16)


def check_boxes(boxes: np.ndarray, where: str) -> None:
    """Boxes inside the image (fractions in [0, 1], positive sides, top + height <= 1) and flips 0 or 1.

    Raises:
        FormatError: naming ``where``.
    """
    top, left, h, w, flip = (boxes[..., i] for i in range(CROP_FIELDS))
    eps = 1e-6
    ok = (np.isfinite(boxes).all() and (top >= 0).all() and (left >= 0).all() and (h > 0).all() and (w > 0).all()
          and (top + h <= 1 + eps).all() and (left + w <= 1 + eps).all() and np.isin(flip, (0.0, 1.0)).all())
    if not ok:
        raise FormatError(f"{where}: crop boxes must be top, left, height, width fractions inside the image and flip 0 or 1")
