"""Names and numbers of the on-disk format (version 1)."""

from __future__ import annotations

FORMAT_NAME = "infer"
FORMAT_VERSION = 1  # major version; readers reject any other major
SUPPORTED_VERSIONS = (1,)
FORMAT_MINOR = 1  # minor version written (readers read 1.0 and 1.1); 1.1 added the image codecs' "stack" (several members per group)
INDEX_FILENAME = "index.json"
GROUP_KEY = "g{:06d}"  # sample key of group g inside the tar shards (no dots)
SHARD_PATTERN = "{prefix}-{shard:06d}.tar"
DEFAULT_SHARD_PREFIX = "shard"
DEFAULT_MAX_SHARD_BYTES = 256 * 1024 * 1024
DEFAULT_ZSTD_LEVEL = 3  # zstd's own default: level 19 stores fp16 arrays no smaller at 57-96x the CPU (decision 0011)
NPY_HEADER_ALLOWANCE = 4096  # bytes an .npy header may take beyond the array payload
META_MAX_BYTES_BASE = 65536  # meta.json bound: this plus META_MAX_BYTES_PER_CLASS * K
META_MAX_BYTES_PER_CLASS = 64
TAR_MTIME = 0  # fixed member mtime, so the same input gives the same bytes
STACK_ROWS = 16_383  # rows of one stacked base-image member when the writer picks the stack (WebP's largest side)
