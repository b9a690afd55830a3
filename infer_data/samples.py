"""Group samples as other readers hand them over -> checked :class:`~infer_data.record.GroupRecord`.

A group reaches a user's pipeline in one of three forms, all accepted by :func:`sample_record`:

- a ``GroupRecord`` (from :func:`infer_data.wds.group_pipeline`), passed through;
- a webdataset sample of raw member bytes (``wds.WebDataset(urls)`` without ``.decode``),
  decoded with the project's safe, bounded decoder;
- a sample whose fields were decoded by someone else: webdataset's ``.decode(zstd_handler, "pil")``
  (or ``"rgb8"``/``"l8"``), or a Hugging Face ``datasets`` row from
  ``load_dataset("webdataset", ...)``: images as PIL images or uint8 arrays, ``.npy`` fields as
  arrays or nested lists, ``meta.json`` as a dict.

Decoded fields are checked as strictly as bytes: names against the codecs of the index, array
shapes exactly, numbers only when they convert to the declared dtype without change (Hugging
Face hands float16 back as float64 lists), image sizes against the stacked layout. Images come
back with the index's C channels (a grey set read as RGB keeps its first channel, as the format
says for WebP), top-k labels come back dense.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from .codecs import create_codec, decompress_bounded, encode_npy
from .errors import FormatError
from .image_codecs import _ImageCodec
from .reader import GroupSchema, decode_group
from .record import GroupRecord
from .streamstages import check_member, decode_sample

# (member stem, codec name) -> the dtype its .npy array holds
NPY_DTYPES: dict[str, Any] = {"base": np.uint8, "comp/fp16": np.float16, "comp/int8": np.int8, "comp_scale": np.float32,
                              "label/fp16": np.float16, "label_topk": np.uint16,
                              "base_files": np.uint8, "base_sizes": np.uint32, "crop_box": np.float32, "crop_label": np.float16}


def sample_record(sample: GroupRecord | Mapping[str, Any], schema: GroupSchema) -> GroupRecord:
    """One group in any of the module docstring's forms -> a checked record.

    Raises:
        FormatError, CodecError: a field the codecs do not name, a missing field, a value of
            another shape, a dtype it does not convert to exactly, an undecodable image.
    """
    if isinstance(sample, GroupRecord):
        return sample
    fields = {k: v for k, v in sample.items() if not k.startswith("__") and v is not None}
    if all(isinstance(v, (bytes, bytearray)) for v in fields.values()):
        return decode_sample(dict(sample), schema)[1]
    return _decoded_record(sample, fields, schema)


def _decoded_record(sample: Mapping[str, Any], fields: dict[str, Any], schema: GroupSchema) -> GroupRecord:
    """A record from a sample with decoded fields (see :func:`sample_record`)."""
    where = f"{sample.get('__url__', '?')} group {sample.get('__key__', '?')}"
    for name in fields:
        check_member(name, 0, schema, where)
    missing = [s for s in sorted(schema.bounds) if s not in fields and (schema.has_labels or not s.startswith("label"))]
    if missing:
        raise FormatError(f"{where}: missing field '{missing[0]}'; pass every field of the sample to the stage")
    plain = _plain_schema(schema)
    image = schema.codecs["base"]
    members = {_plain_name(n): _member_bytes(n, v, schema, where) for n, v in fields.items()
               if not (isinstance(image, _ImageCodec) and n.startswith("base."))}
    record = decode_group(members, plain, where, bases=not isinstance(image, _ImageCodec))
    if isinstance(image, _ImageCodec):
        record = replace(record, bases=_image_bases(fields, image, schema.shapes.base, where))
    return record


def _plain_schema(schema: GroupSchema) -> GroupSchema:
    """The schema of the same index with every .npy field uncompressed."""
    codecs = {f: ({**spec, "zstd_level": None} if "zstd_level" in create_codec(f, spec).spec() else spec)
              for f, spec in schema.index.codecs.items()}
    return GroupSchema(replace(schema.index, codecs=codecs))


def _plain_name(name: str) -> str:
    return name[:-4] if name.endswith(".zst") else name


def _member_bytes(name: str, value: Any, schema: GroupSchema, where: str) -> bytes:
    """The uncompressed member bytes of a decoded (or raw) ``.npy`` or ``meta.json`` field."""
    value = value.get("bytes", value) if isinstance(value, Mapping) and name != "meta.json" else value
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
        return decompress_bounded(data, schema.bounds[name], f"{where} member '{name}'") if name.endswith(".zst") else data
    if name == "meta.json":
        meta = value if isinstance(value, Mapping) else json.loads(str(value))
        meta = {k: v for k, v in meta.items() if v is not None}  # Hugging Face fills absent keys with None
        return json.dumps(meta, default=lambda v: np.asarray(v).tolist()).encode()  # numpy-formatted rows hold arrays
    stem = name.split(".", 1)[0]
    codec_name = schema.index.codecs["compensators" if stem == "comp" else "labels"]["name"] if stem in ("comp", "label") else ""
    dtype = NPY_DTYPES[f"{stem}/{codec_name}" if codec_name else stem]
    return encode_npy(exact_array(value, dtype, f"{where} field '{name}'"), None)


def exact_array(value: Any, dtype: Any, where: str) -> np.ndarray:
    """``value`` (array or nested lists) as an array of ``dtype``, refusing any value that changes.

    Raises:
        FormatError: not numeric, or a value the dtype cannot hold exactly.
    """
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise FormatError(f"{where}: holds {arr.dtype} values, expected numbers of dtype {np.dtype(dtype).name}")
    out = arr.astype(dtype)
    if not np.array_equal(out.astype(arr.dtype), arr, equal_nan=arr.dtype.kind == "f"):
        raise FormatError(f"{where}: values do not convert to {np.dtype(dtype).name} exactly; the field was altered, "
                          "read the shard again without converting it")
    return out


def _image_bases(fields: dict[str, Any], codec: _ImageCodec, shape: tuple[int, ...], where: str) -> np.ndarray:
    """uint8 (K, C, H, W) from a group's stacked image fields, each bytes, a PIL image or a uint8 array."""
    k, c, h, w = shape
    t = codec.tile_height(h)
    out = np.empty(shape, np.uint8)
    first = 0
    for name, n in zip(codec.member_names(shape), codec.counts(k)):
        chw = _pixels(fields[name], codec, (c, n * t, w), f"{where} field '{name}'")  # (C, n*T, W)
        out[first : first + n] = chw.reshape(c, n, t, w)[:, :, :h].transpose(1, 0, 2, 3)
        first += n
    return out


def _pixels(value: Any, codec: _ImageCodec, chw: tuple[int, int, int], where: str) -> np.ndarray:
    """One stacked image field -> uint8 (C, rows, W), C as the index declares.

    Raises:
        FormatError: another size, a colour image for a grey set, or not 8-bit pixels.
    """
    value = value.get("bytes", value) if isinstance(value, Mapping) else value
    if isinstance(value, (bytes, bytearray)):
        return codec._load(bytes(value), chw, where)
    c, rows, w = chw
    if hasattr(value, "mode") and hasattr(value, "size"):  # a PIL image: size is checked before pixels are read
        if tuple(value.size) != (w, rows) or value.mode not in ("L", "RGB"):
            raise FormatError(f"{where}: image is {value.size[0]}x{value.size[1]} mode {value.mode}, "
                              f"the index declares {w}x{rows} L or RGB")
        value = np.asarray(value)
    arr = np.asarray(value)
    if arr.dtype != np.uint8 or arr.shape[:2] != (rows, w) or arr.ndim not in (2, 3):
        raise FormatError(f"{where}: holds {arr.dtype} {arr.shape}, expected uint8 ({rows}, {w}[, C]); decode images "
                          "as 8-bit ('pil', 'rgb8' or 'l8') or leave them as bytes")
    hwc = arr[:, :, None] if arr.ndim == 2 else arr  # (rows, W, C')
    if hwc.shape[2] not in (1, 3) or (c == 3 and hwc.shape[2] != 3):
        raise FormatError(f"{where}: image has {hwc.shape[2]} channels, the index declares C={c}")
    return np.ascontiguousarray(hwc[:, :, :c].transpose(2, 0, 1))
