"""The resumable work folder of ``infer distill``: per-group results cached atomically.

``DIR/.infer-work/`` holds ``run.json`` (a fingerprint of everything that determines the result),
one ``group-NNNNNN.npz`` per finished group (``.npy`` members, no pickle), and each finished
shard ``shard-NNNNNN.tar`` with ``shard-NNNNNN.json``, its index entry; the shards move to their
final names in ``DIR`` when the index is written. A run that finds the folder with the same
fingerprint skips the shards and groups already there; since groups are computed in fixed
chunks from per-group seeds, the resumed result is bit-identical to an uninterrupted one,
whichever number of processes ran before. The folder is removed once the index is written.

Several processes (torchrun ranks) share the folder: each file is written under a reserved
temporary name unique to its writer (``.infer-tmp-<pid>-<random>-...``; a shard and a group
belong to one rank) and renamed into place, so no two processes write the same file. The folder
is the project's alone: one that exists without ``run.json`` but holds files is refused, and
:meth:`WorkDir.remove` deletes only the files named above (and reserved temporaries), never
anything else a user put there. Failed writes (full disk, read-only folder) are one-line
``StorageError`` messages; the files already cached stay, so the same command resumes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from infer_data.atomic import TEMP_PREFIX, atomic_write, storage_errors
from infer_data.errors import ConfigError, FormatError
from infer_data.index import ShardEntry
from infer_data.writer import sha256_file

WORK_DIRNAME = ".infer-work"
RUN_FILE = "run.json"
GROUP_FIELDS = ("class_ids", "compensators", "labels", "losses", "source_indices")
OUR_FILES = re.compile(rf"{RUN_FILE}|group-\d{{6}}\.npz|.+-\d{{6}}\.(tar|json)|{re.escape(TEMP_PREFIX)}.*")  # what remove() may delete

logger = logging.getLogger(__name__)


class WorkDir:
    """Cache of finished groups for one run, keyed by a JSON fingerprint.

    Raises:
        ConfigError: the folder belongs to a run with a different fingerprint, or holds files
            without being a run's work folder.
        StorageError: the folder cannot be written.
    """

    def __init__(self, out_dir: str | os.PathLike[str], fingerprint: dict[str, Any]) -> None:
        self.path = Path(out_dir) / WORK_DIRNAME
        text = json.dumps(fingerprint, sort_keys=True, indent=1)
        run = self.path / RUN_FILE
        if run.is_file():
            if run.read_text() != text:
                raise ConfigError(
                    f"{self.path} holds an interrupted run with other arguments; rerun with the same arguments "
                    "to resume it, or delete that folder to start over"
                )
            return
        if self.path.is_symlink() or self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise ConfigError(f"{self.path}: exists but is not a work folder of infer distill (no {RUN_FILE}); "
                              "move it away, it is not deleted")
        with storage_errors(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write(run, text.encode())

    def group_file(self, g: int) -> Path:
        """Path of group ``g``'s cache file."""
        return self.path / f"group-{g:06d}.npz"

    def has(self, g: int) -> bool:
        """Whether group ``g`` is finished."""
        return self.group_file(g).is_file()

    def save(self, g: int, arrays: dict[str, np.ndarray]) -> None:
        """Store group ``g`` atomically (temporary file, then rename)."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            for name in sorted(arrays):
                member = io.BytesIO()
                np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
        with storage_errors(self.group_file(g)):
            atomic_write(self.group_file(g), buf.getvalue())

    def load(self, g: int) -> dict[str, np.ndarray]:
        """Group ``g``'s arrays.

        Raises:
            FormatError: a damaged cache file (delete it to recompute that group).
        """
        path = self.group_file(g)
        try:
            with np.load(path, allow_pickle=False) as z:
                return {name: z[name] for name in GROUP_FIELDS}
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise FormatError(f"{path}: damaged work file ({type(exc).__name__}); delete it and rerun to recompute the group") from exc

    def shard_file(self, shard: int) -> Path:
        """Path of shard ``shard``'s record."""
        return self.path / f"shard-{shard:06d}.json"

    def save_shard(self, shard: int, entry: ShardEntry) -> None:
        """Record that shard ``shard`` is written under its final name, as ``entry`` describes."""
        with storage_errors(self.shard_file(shard)):
            atomic_write(self.shard_file(shard), json.dumps(dataclasses.asdict(entry), sort_keys=True).encode())

    def finished_shard(self, shard: int, path: Path, groups: range) -> ShardEntry | None:
        """The recorded entry of shard ``shard`` if the file at ``path`` is that finished shard.

        The shard counts as finished when its record names ``path`` and ``groups`` and the file
        has the recorded size and sha256; anything else (no record, a damaged or partial file)
        means it is written again.
        """
        try:
            entry = ShardEntry(**json.loads(self.shard_file(shard).read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if (entry.name, entry.first_group, entry.groups) != (path.name, groups.start, len(groups)):
            return None
        if not path.is_file() or path.stat().st_size != entry.bytes or sha256_file(path) != entry.sha256:
            return None
        return entry

    def remove(self) -> None:
        """Delete the files of the work folder that are ours (:data:`OUR_FILES`), then the folder if empty."""
        for path in self.path.iterdir():
            if OUR_FILES.fullmatch(path.name) and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except OSError:
            logger.warning("%s: kept, it holds files infer distill did not write", self.path)
