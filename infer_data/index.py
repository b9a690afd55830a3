"""The index.json schema: DatasetInfo, MethodInfo, ShardEntry and DatasetIndex.

``DatasetIndex.to_json`` writes what ``ShardWriter`` produced; ``DatasetIndex.from_json`` is its
exact inverse and the first gate of every reader: it rejects other formats and unknown major
versions, and turns every malformed field into a :class:`FormatError` naming the file.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .constants import FORMAT_MINOR, FORMAT_NAME, FORMAT_VERSION, INDEX_FILENAME, SUPPORTED_VERSIONS
from .errors import DatasetNotFoundError, FormatError, LimitError, UnsupportedVersionError, quote
from .limits import MAX_BYTES_ENV, load_json, max_bytes

INDEX_MAX_BYTES = 64 * 1024 * 1024


@dataclass
class DatasetInfo:
    """What the distilled data is a distillation of."""

    name: str  # e.g. "cifar10", "imagenet1k", "fashion-mnist-embedded"
    classes: list[str]  # class names, index = class id
    image_shape: tuple[int, int, int]  # (C, H, W) of every stored image
    mean: list[float]  # per-channel mean of the source training set, [0, 1] units
    std: list[float]  # per-channel std of the source training set, [0, 1] units
    source: str = ""  # where the training images came from (path, URL or dataset id)

    @property
    def num_classes(self) -> int:
        """NC, the width of the label rows."""
        return len(self.classes)


@dataclass
class MethodInfo:
    """The distillation parameters (INFER): K, M, G, ipc, teachers, seed."""

    k: int  # base images per group
    m: int  # compensators per group (one per teacher)
    g: int  # groups
    ipc: int  # stored-image budget per class
    teachers: list[str]  # architecture names, compensator j came from teachers[j]
    seed: int = 0
    producer: str = ""  # software that wrote the data, with its version


@dataclass
class ShardEntry:
    """One shard as the index lists it."""

    name: str  # file name relative to the dataset root
    bytes: int  # exact file size
    sha256: str  # hex digest of the whole file
    groups: int  # groups in this shard
    instances: int  # training instances these groups expand to
    first_group: int  # global number of the shard's first group


@dataclass
class DatasetIndex:
    """The whole index.json."""

    dataset: DatasetInfo
    method: MethodInfo
    codecs: dict[str, dict[str, Any]]  # field ("base", "compensators", "labels") -> codec spec
    shards: list[ShardEntry] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    version: int = FORMAT_VERSION
    minor: int = FORMAT_MINOR  # what this writer writes; from_json keeps the file's (0 when absent)

    @property
    def num_groups(self) -> int:
        """G, counted over the shards."""
        return sum(s.groups for s in self.shards)

    @property
    def num_instances(self) -> int:
        """K * (M + 1) * G."""
        return sum(s.instances for s in self.shards)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in a fixed order."""
        return {
            "format": FORMAT_NAME,
            "version": self.version,
            "minor": self.minor,
            "dataset": asdict(self.dataset) | {"image_shape": list(self.dataset.image_shape)},
            "method": asdict(self.method),
            "codecs": self.codecs,
            "shards": [asdict(s) for s in self.shards],
            "totals": {
                "groups": self.num_groups,
                "instances": self.num_instances,
                "bytes": sum(s.bytes for s in self.shards),
            },
            "provenance": self.provenance,
        }

    def to_json(self) -> str:
        """Serialized index, deterministic for the same content."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, where: str = INDEX_FILENAME) -> DatasetIndex:
        """Parse and validate an index: every field's type and range, the shards' names, order,
        contiguity and sizes, and the caps of :mod:`infer_data.limits`, before anything is allocated.

        Raises:
            UnsupportedVersionError: another format name or an unknown major version.
            FormatError: invalid JSON or a missing, mistyped or inconsistent field, naming ``where``.
            LimitError: a declared size beyond ``INFER_MAX_BYTES`` or the format's caps.
        """
        obj = load_json(text, where)
        if not isinstance(obj, dict):
            raise FormatError(f"{where}: top level must be a JSON object; re-download or rewrite the index")
        if obj.get("format") != FORMAT_NAME:
            raise UnsupportedVersionError(
                f"{where}: format is {_show(obj.get('format'))}, expected {FORMAT_NAME!r}; this is not an INFER dataset index"
            )
        version = obj.get("version")
        if type(version) is not int or version not in SUPPORTED_VERSIONS:
            raise UnsupportedVersionError(
                f"{where}: format version {_show(version)} is not supported (this reader reads "
                f"{', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade infer-data"
            )
        try:
            index = cls._from_obj(obj)
        except (KeyError, TypeError, ValueError) as exc:
            what = f"{exc} is missing" if isinstance(exc, KeyError) else str(exc)
            raise FormatError(f"{where}: malformed field ({what}); re-download or rewrite the index") from None
        index.check_limits(where)
        return index

    @classmethod
    def _from_obj(cls, obj: dict[str, Any]) -> DatasetIndex:
        d, m = _dict(obj["dataset"], "dataset"), _dict(obj["method"], "method")
        shape = _list(d["image_shape"], "dataset.image_shape", 3, 3)
        dataset = DatasetInfo(
            _str(d["name"], "dataset.name"), [_str(c, "dataset.classes[]") for c in _list(d["classes"], "dataset.classes", 1, MAX_CLASSES)],
            (_int(shape[0], "image channels", 1, 3), _int(shape[1], "image height", 1, MAX_SIDE), _int(shape[2], "image width", 1, MAX_SIDE)),
            [_num(v, "dataset.mean[]") for v in _list(d["mean"], "dataset.mean", 1, 3)],
            [_num(v, "dataset.std[]") for v in _list(d["std"], "dataset.std", 1, 3)], _str(d.get("source", ""), "dataset.source", 4096))
        method = MethodInfo(
            _int(m["k"], "method.k", 1, MAX_CLASSES), _int(m["m"], "method.m", 0, MAX_TEACHERS), _int(m["g"], "method.g", 0, MAX_GROUPS),
            _int(m["ipc"], "method.ipc", 0, MAX_GROUPS), [_str(t, "method.teachers[]") for t in _list(m["teachers"], "method.teachers", 0, MAX_TEACHERS)],
            _int(m.get("seed", 0), "method.seed", -(2**63), 2**64 - 1), _str(m.get("producer", ""), "method.producer"))
        codecs = _dict(obj["codecs"], "codecs")
        for name in ("base", "compensators", "labels"):
            if not isinstance(codecs.get(name), dict) or type(codecs[name].get("name")) is not str:
                raise ValueError(f"codecs.{name} must be an object with a string 'name'")
        shards = [_shard(s, i) for i, s in enumerate(_list(obj["shards"], "shards", 0, MAX_SHARDS))]
        minor = _int(obj.get("minor", 0), "minor", 0, 2**31)
        index = cls(dataset, method, dict(codecs), shards, _dict(obj.get("provenance", {}), "provenance"), int(obj["version"]), minor)
        index.check()
        return index

    def check(self) -> None:
        """Cross-field consistency: shapes, teachers, shard names, order, contiguity and counts.

        Raises:
            ValueError: a field that contradicts another one (wrapped by ``from_json``).
        """
        c, h, w = self.dataset.image_shape
        if c not in (1, 3) or h < 1 or w < 1:
            raise ValueError(f"image_shape must be (1 or 3, H>=1, W>=1), got {self.dataset.image_shape}")
        if len(self.dataset.mean) != c or len(self.dataset.std) != c:
            raise ValueError(f"mean and std need {c} values each")
        if not all(s > 0 for s in self.dataset.std):
            raise ValueError(f"std must be positive, got {self.dataset.std}")
        if self.method.k < 1 or self.method.m < 0 or len(self.method.teachers) != self.method.m:
            raise ValueError(f"method needs k >= 1 and one teacher name per compensator (m={self.method.m})")
        rows, names, next_group = self.method.k * (self.method.m + 1), set(), 0
        for i, s in enumerate(self.shards):
            if not SHARD_NAME.fullmatch(s.name) or len(s.name.encode()) > MAX_NAME_BYTES:
                raise ValueError(f"shard {i} name {quote(s.name)} must be a plain file name of at most {MAX_NAME_BYTES} "
                                 "letters, digits, '.', '_' or '-' (not starting with '.')")
            if s.name in names:
                raise ValueError(f"shard {quote(s.name)} is listed twice")
            names.add(s.name)
            if s.first_group != next_group:
                raise ValueError(f"shard {quote(s.name)}: first_group {s.first_group}, but the shards before it end at group "
                                 f"{next_group} (shards must be listed in order, with contiguous groups)")
            if s.instances != s.groups * rows:
                raise ValueError(f"shard {quote(s.name)}: {s.instances} instances do not equal groups*K*(M+1) = {s.groups * rows}")
            if s.bytes < s.groups * MIN_GROUP_BYTES:
                raise ValueError(f"shard {quote(s.name)}: {s.bytes} bytes cannot hold {s.groups} groups "
                                 f"(each takes at least {MIN_GROUP_BYTES})")
            next_group += s.groups
        if self.num_groups != self.method.g:
            raise ValueError(f"method.g is {self.method.g} but the shards hold {self.num_groups} groups")
        for name in ("base", "compensators", "labels"):
            if name not in self.codecs or "name" not in self.codecs[name]:
                raise ValueError(f"codecs.{name} with a 'name' is required")

    def group_nbytes(self) -> int:
        """Bytes of one decoded group: bases uint8 (K, C, H, W) + compensators float32 (M, C, H, W)
        + labels float32 (K * (M + 1), NC)."""
        k, m, pixels = self.method.k, self.method.m, math.prod(self.dataset.image_shape)
        return k * pixels + 4 * m * pixels + 4 * k * (m + 1) * self.dataset.num_classes

    def check_limits(self, where: str = INDEX_FILENAME) -> None:
        """Refuse declared sizes beyond ``INFER_MAX_BYTES`` (one group decoded, one shard's bytes).

        Raises:
            LimitError: naming ``where``, the size and the variable that allows it.
        """
        cap = max_bytes()
        if self.group_nbytes() > cap:
            raise LimitError(f"{where}: one group decodes to {self.group_nbytes()} bytes, above the {cap} allowed; "
                             f"if the dataset is trusted, raise {MAX_BYTES_ENV}")
        big = max(self.shards, key=lambda s: s.bytes, default=None)
        if big is not None and big.bytes > cap:
            raise LimitError(f"{where}: shard {quote(big.name)} declares {big.bytes} bytes, above the {cap} allowed; "
                             f"if the dataset is trusted, raise {MAX_BYTES_ENV}")


MAX_CLASSES = 1 << 20  # classes (and K) an index may declare
MAX_TEACHERS = 1024  # compensators per group
MAX_GROUPS = 1 << 40  # groups of a dataset (also bounded by the shards' bytes)
MAX_SHARDS = 1 << 20  # shards of a dataset
MAX_SIDE = 1 << 16  # pixels per image side
MAX_NAME_BYTES = 255  # a shard file name, in UTF-8 bytes (the common file-system limit)
MIN_GROUP_BYTES = 2048  # every group has at least two tar members: a 512-byte header and data block each
SHARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _show(value: Any) -> str:
    """A short, escaped rendering of a JSON value for messages."""
    return quote(value, 40) if isinstance(value, str) else quote(repr(value), 40)[1:-1]


def _int(v: Any, what: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise ValueError(f"{what} must be an integer in {lo}..{hi}, got {_show(v)}")
    return v


def _num(v: Any, what: str) -> float:
    if type(v) not in (int, float) or not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number, got {_show(v)}")
    return float(v)


def _str(v: Any, what: str, max_len: int = 1000) -> str:
    if type(v) is not str or len(v) > max_len:
        raise ValueError(f"{what} must be a string of at most {max_len} characters, got {_show(v)}")
    return v


def _list(v: Any, what: str, lo: int, hi: int) -> list[Any]:
    if type(v) is not list or not lo <= len(v) <= hi:
        raise ValueError(f"{what} must be a list of {lo}..{hi} items, got {_show(v) if type(v) is not list else f'{len(v)} items'}")
    return v


def _dict(v: Any, what: str) -> dict[str, Any]:
    if type(v) is not dict:
        raise ValueError(f"{what} must be an object, got {_show(v)}")
    return v


def _shard(obj: Any, i: int) -> ShardEntry:
    s = _dict(obj, f"shards[{i}]")
    sha = _str(s["sha256"], f"shards[{i}].sha256", 64)
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ValueError(f"shards[{i}].sha256 must be 64 lowercase hex digits, got {_show(sha)}")
    return ShardEntry(_str(s["name"], f"shards[{i}].name", 1024), _int(s["bytes"], f"shards[{i}].bytes"), sha,
                      _int(s["groups"], f"shards[{i}].groups", 1, MAX_GROUPS), _int(s["instances"], f"shards[{i}].instances"),
                      _int(s["first_group"], f"shards[{i}].first_group", 0, MAX_GROUPS))


def read_index(root: str | os.PathLike[str]) -> DatasetIndex:
    """Read ``root/index.json``.

    Raises:
        DatasetNotFoundError: no such folder or no index in it.
        FormatError: the index is malformed or too large.
        UnsupportedVersionError: the index is of another format or major version.
    """
    path = Path(root) / INDEX_FILENAME
    if not path.is_file():
        raise DatasetNotFoundError(
            f"No INFER dataset found at {root}: missing {INDEX_FILENAME}. Create one with `infer distill` or check the path."
        )
    return DatasetIndex.from_json(read_bounded(path, INDEX_MAX_BYTES), where=str(path))


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, reading at most ``limit + 1`` of them.

    Raises:
        FormatError: the file is larger than ``limit`` bytes (or cannot be read).
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc.strerror}); check the file") from None
    if len(data) > limit:
        raise FormatError(f"{path}: larger than {limit} bytes; this is not an INFER index")
    return data
