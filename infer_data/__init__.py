"""infer_data: the shard format and consumer for INFER-distilled datasets.

Public API::

    from infer_data import InferDataset, ShardWriter, GroupRecord, mixup_batch
"""

from __future__ import annotations

__version__ = "0.1.0"

from .batches import batch_loader as batch_loader
from .codecs import create_codec as create_codec
from .codecs import list_codecs as list_codecs
from .dataset import InferDataset as InferDataset
from .errors import (
    CodecError as CodecError,
    ConfigError as ConfigError,
    DatasetNotFoundError as DatasetNotFoundError,
    FormatError as FormatError,
    InferError as InferError,
    IntegrityError as IntegrityError,
    RegistryError as RegistryError,
    UnsupportedVersionError as UnsupportedVersionError,
)
from .index import DatasetIndex as DatasetIndex
from .index import DatasetInfo as DatasetInfo
from .index import MethodInfo as MethodInfo
from .index import ShardEntry as ShardEntry
from .index import read_index as read_index
from .loader import DeviceData as DeviceData
from .loader import DeviceLoader as DeviceLoader
from .loader import LoaderConfig as LoaderConfig
from .mixup import BatchMixup as BatchMixup
from .mixup import mixup_batch as mixup_batch
from .reader import iter_groups as iter_groups
from .record import GroupRecord as GroupRecord
from .writer import ShardWriter as ShardWriter
from .stream import InferStreamDataset as InferStreamDataset
from .wds import decode_topk as decode_topk
from .wds import expand_groups as expand_groups
from .wds import group_pipeline as group_pipeline
from .shardstream import StreamError as StreamError

__all__ = [
    "BatchMixup", "CodecError", "ConfigError", "DatasetIndex", "DatasetInfo", "DatasetNotFoundError", "DeviceData",
    "DeviceLoader", "LoaderConfig",
    "FormatError", "GroupRecord", "InferDataset", "InferError", "IntegrityError", "MethodInfo",
    "RegistryError", "ShardEntry", "ShardWriter", "UnsupportedVersionError", "__version__",
    "create_codec", "iter_groups", "list_codecs", "mixup_batch", "read_index",
    "batch_loader",
]
__all__ += ["InferStreamDataset", "StreamError", "decode_topk", "expand_groups", "group_pipeline"]
