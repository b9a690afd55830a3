"""Safe writing: atomic file writes, reserved temporary names, a per-folder lock, storage errors.

Every temporary file or folder the project creates in a user's folder is named
``.infer-tmp-<pid>-<random>-<what>`` (:func:`temp_name`), a name no user file has, so clean-up can
tell ours from theirs. A writer holds the folder's :class:`DirLock` while it writes, so a second
writer refuses instead of sharing files with the first, and temporaries found under the lock are
known to be left by a dead writer. Failed writes (full disk, read-only folder, no permission)
become one-line :class:`StorageError` messages (:func:`storage_errors`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError, InferError

TEMP_PREFIX = ".infer-tmp-"
LOCK_NAME = ".infer-lock"
HINTS = {  # errno -> what the user can do about it
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space (disk quota exceeded)",
    errno.EFBIG: "raise the file-size limit (ulimit -f) or use a file system that takes larger files",
    errno.EROFS: "choose a folder on a writable file system",
    errno.EACCES: "choose a folder you may write to, or fix its permissions",
    errno.EPERM: "choose a folder you may write to, or fix its permissions",
}


class StorageError(InferError, OSError):
    """Writing failed for a reason of the storage: full disk, read-only or unwritable folder."""


def temp_name(what: str) -> str:
    """A hidden file name reserved for this process's temporaries: ``.infer-tmp-<pid>-<8 hex>-<what>``."""
    return f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{what}"


@contextlib.contextmanager
def storage_errors(path: str | os.PathLike[str], resume: str = "then rerun the same command; finished work is kept") -> Iterator[None]:
    """Turn an ``OSError`` of the storage raised inside the block into a one-line :class:`StorageError`.

    The message names ``path`` (or the file the error names), the system's reason and what to do.
    Errors that are not about the storage (a missing file, a bug) pass through unchanged.
    """
    try:
        yield
    except InferError:
        raise
    except OSError as exc:
        if exc.errno not in HINTS:
            raise
        where = exc.filename if exc.filename is not None else path
        raise StorageError(f"{where}: cannot write ({errno.errorcode[exc.errno]}: {os.strerror(exc.errno)}); "
                           f"{HINTS[exc.errno]}, {resume}") from exc


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the file descriptor ``fd`` with ``os.write`` (which may write less per call)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never part.

    The temporary file is created next to ``path`` under a reserved name unique to the call
    (:data:`TEMP_PREFIX`), so concurrent writers of the same path never share it; the last
    rename wins. It is removed if anything fails.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=f"-{path.name}", dir=path.parent)
    try:
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the reserved temporaries in ``folder``; call only while holding its :class:`DirLock`."""
    for stale in folder.glob(f"{TEMP_PREFIX}*"):
        if stale.is_file() and not stale.is_symlink():
            stale.unlink(missing_ok=True)


class DirLock:
    """An exclusive ``flock`` on ``folder/.infer-lock``, held by one writer at a time.

    The kernel drops the lock when its holder exits, however it exits, so a killed writer never
    leaves a stale lock. :meth:`release` deletes the lock file; :meth:`acquire` re-checks after
    locking that the file it locked is still the one in the folder, so a file deleted by a
    releasing holder is never locked by two processes.

    Raises:
        ConfigError: another process holds the lock.
        StorageError: the lock file cannot be created (read-only folder, no permission, full disk).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DirLock:
        """Take the lock without waiting; returns ``self``."""
        while self._fd is None:
            with storage_errors(self.path):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ConfigError(f"{self.path.parent}: another infer process is writing to this folder (it holds {LOCK_NAME}); "
                                  "wait for it to finish or choose another folder") from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path, follow_symlinks=False))
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
            else:  # released and deleted by its last holder between our open and flock: lock the new file
                os.close(fd)
        return self

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Delete the lock file and drop the lock (nothing to do if not held)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
