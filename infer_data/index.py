"""The index.json schema: DatasetInfo, MethodInfo, ShardEntry and DatasetIndex.

``DatasetIndex.to_json`` writes what ``ShardWriter`` produced; ``DatasetIndex.from_json`` is its
exact inverse and the first gate of every reader: it rejects other formats and unknown major
versions, and turns every malformed field into a :class:`FormatError` naming the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .constants import FORMAT_MINOR, FORMAT_NAME, FORMAT_VERSION, INDEX_FILENAME, SUPPORTED_VERSIONS
from .errors import DatasetNotFoundError, FormatError, UnsupportedVersionError

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
    def from_json(cls, text: str, *, where: str = INDEX_FILENAME) -> DatasetIndex:
        """Parse and validate an index.

        Raises:
            UnsupportedVersionError: another format name or an unknown major version.
            FormatError: invalid JSON or a missing or mistyped field, naming ``where``.
        """
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FormatError(f"{where}: not valid JSON ({exc}); re-download or rewrite the index") from exc
        if not isinstance(obj, dict):
            raise FormatError(f"{where}: top level must be a JSON object; re-download or rewrite the index")
        if obj.get("format") != FORMAT_NAME:
            raise UnsupportedVersionError(
                f"{where}: format is {obj.get('format')!r}, expected {FORMAT_NAME!r}; this is not an INFER dataset index"
            )
        if obj.get("version") not in SUPPORTED_VERSIONS:
            raise UnsupportedVersionError(
                f"{where}: format version {obj.get('version')!r} is not supported (this reader reads "
                f"{', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade infer-data"
            )
        try:
            return cls._from_obj(obj)
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{where}: malformed field ({type(exc).__name__}: {exc}); re-download or rewrite the index") from exc

    @classmethod
    def _from_obj(cls, obj: dict[str, Any]) -> DatasetIndex:
        ds = _known(DatasetInfo, obj["dataset"])
        ds["image_shape"] = tuple(int(v) for v in ds["image_shape"])
        dataset = DatasetInfo(**ds)
        method = MethodInfo(**_known(MethodInfo, obj["method"]))
        shards = [ShardEntry(**_known(ShardEntry, s)) for s in obj["shards"]]
        index = cls(dataset, method, dict(obj["codecs"]), shards, dict(obj.get("provenance", {})),
                    int(obj["version"]), int(obj.get("minor", 0)))
        index.check()
        return index

    def check(self) -> None:
        """Cross-field consistency.

        Raises:
            ValueError: a field that contradicts another one (wrapped by ``from_json``).
        """
        c, h, w = self.dataset.image_shape
        if c not in (1, 3) or h < 1 or w < 1:
            raise ValueError(f"image_shape must be (1 or 3, H>=1, W>=1), got {self.dataset.image_shape}")
        if len(self.dataset.mean) != c or len(self.dataset.std) != c:
            raise ValueError(f"mean and std need {c} values each")
        if self.method.k < 1 or self.method.m < 0 or len(self.method.teachers) != self.method.m:
            raise ValueError(f"method needs k >= 1 and one teacher name per compensator (m={self.method.m})")
        for s in self.shards:
            if "/" in s.name or "\\" in s.name or s.name.startswith("."):
                raise ValueError(f"shard name {s.name!r} must be a plain file name")
            if s.instances != s.groups * self.method.k * (self.method.m + 1):
                raise ValueError(f"shard {s.name}: {s.instances} instances do not equal groups*K*(M+1)")
        if self.shards and self.num_groups != self.method.g:
            raise ValueError(f"method.g is {self.method.g} but the shards hold {self.num_groups} groups")
        for name in ("base", "compensators", "labels"):
            if name not in self.codecs or "name" not in self.codecs[name]:
                raise ValueError(f"codecs.{name} with a 'name' is required")


def _known(cls: type, obj: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``obj`` that ``cls`` declares (minor versions may add others)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in dict(obj).items() if k in names}


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
    if path.stat().st_size > INDEX_MAX_BYTES:
        raise FormatError(f"{path}: larger than {INDEX_MAX_BYTES} bytes; this is not an INFER index")
    return DatasetIndex.from_json(path.read_bytes().decode("utf-8", errors="replace"), where=str(path))
