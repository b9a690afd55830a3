"""Where a streamed dataset lives, and shard byte streams that are counted and hashed as they pass.

A dataset *location* is the prefix under which ``index.json`` and the shards are published:

- a local folder (``/data/ds``) or ``file:///data/ds``;
- an HTTP(S) prefix (``https://host/ds``): files are ``<prefix>/<name>``;
- a webdataset ``pipe:`` command with ``{}`` where the file name goes, e.g.
  ``pipe:aws s3 cp s3://bucket/ds/{} -``: ``{}`` is replaced by ``index.json`` or a shard name
  and the command's standard output is read.

Every file is opened with webdataset's ``gopen`` (``curl`` for HTTP(S), the shell for ``pipe:``).
:class:`CheckedStream` counts and hashes a shard's bytes as they are read, never returns more
than the index declares, and at the end compares size and sha256 with the index. With a cache
folder the bytes are also written to a temporary file that gets the shard's name only once the
check passed; a shard that fails is never left in the cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .constants import INDEX_FILENAME
from .errors import ConfigError, DatasetNotFoundError, FormatError, InferError, IntegrityError, quote
from .index import INDEX_MAX_BYTES, DatasetIndex, ShardEntry
from .remote import DEADLINE_ENV, fetch_deadline, mark_source

CHUNK = 1 << 20
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
REMOTE_SCHEMES = ("http://", "https://")


class StreamError(InferError, ConnectionError):
    """A shard stream ended or failed before the bytes the index declares had arrived."""


def _gopen(url: str) -> IO[bytes]:
    from webdataset.gopen import gopen

    return gopen(url, "rb")  # type: ignore[no-any-return]


class RawReader:
    """Reads a stream from ``gopen``; for a command (webdataset's ``Pipe``: ``curl`` for HTTP(S),
    the shell for ``pipe:``) it reads the command's output directly and reports its exit status
    at the end, because ``Pipe.read`` drops the bytes of a read during which the command failed."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.proc = getattr(stream, "proc", None)
        self.raw = stream.stream if self.proc is not None else stream

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes, as soon as some arrived (a trickling source cannot hold a read); ``b""`` at the end."""
        read1 = getattr(self.raw, "read1", None)
        return read1(size) if read1 is not None else self.raw.read(size)  # type: ignore[no-any-return]

    def kill(self) -> None:
        """Stop the source now: the command is killed (a blocked read then ends)."""
        if self.proc is not None:
            self.proc.kill()

    def failure(self) -> str | None:
        """Why the stream ended, if its command failed (call after ``read`` returned ``b""``)."""
        if self.proc is None:
            return None
        status = self.proc.wait()
        if status == 0:
            return None
        cmd = self.stream.args[0][0]
        name = cmd[0] if isinstance(cmd, (list, tuple)) else str(cmd).split(" ", 1)[0]
        return f"{name} exited with status {status}"

    def close(self) -> None:
        """Close; a command's exit status after an early close is not an error here."""
        _close_quietly(self.stream)


@dataclass(frozen=True)
class Location:
    """A dataset prefix: local folder, ``file://``, ``http(s)://`` or ``pipe:...{}...``."""

    prefix: str

    def __post_init__(self) -> None:
        if self.prefix.startswith("pipe:") and "{}" not in self.prefix:
            raise ConfigError(f"{self.prefix!r}: a pipe: source needs '{{}}' where the file name goes, "
                              "e.g. 'pipe:aws s3 cp s3://bucket/ds/{} -'")

    @classmethod
    def of(cls, source: str | os.PathLike[str]) -> Location:
        """The location of ``source`` (a trailing ``/`` of a URL or folder is dropped)."""
        text = os.fspath(source)
        return cls(text if text.startswith("pipe:") else (text.rstrip("/") or "/"))

    @property
    def is_remote(self) -> bool:
        """Whether files come over the network or from a command (worth caching)."""
        return self.prefix.startswith(REMOTE_SCHEMES + ("pipe:",))

    def url(self, name: str) -> str:
        """The URL (or path, or pipe command) of file ``name``.

        Raises:
            FormatError: ``name`` is not a plain file name of letters, digits, ``.``, ``_``, ``-``
                (it may end up in a shell command).
        """
        if not SAFE_NAME.fullmatch(name):
            raise FormatError(f"{self.prefix}: file name {quote(name)} in {INDEX_FILENAME} is not a plain name "
                              "(letters, digits, '.', '_', '-'); refusing to read it")
        if self.prefix.startswith("pipe:"):
            return self.prefix.replace("{}", name)
        if self.prefix.startswith(REMOTE_SCHEMES + ("file://",)):
            return f"{self.prefix}/{name}"
        return str(Path(self.prefix) / name)


def read_index_at(location: Location) -> tuple[DatasetIndex, bytes]:
    """Read and parse ``index.json`` at ``location``, at most ``INDEX_MAX_BYTES`` of it.

    Returns:
        The index and its exact bytes.

    Raises:
        DatasetNotFoundError: it cannot be read (missing, unreachable, command failed).
        FormatError, UnsupportedVersionError: too large or not a valid index.
    """
    url = location.url(INDEX_FILENAME)
    try:
        reader = RawReader(_gopen(url))
        timer = threading.Timer(fetch_deadline(1 << 20), reader.kill)
        timer.daemon = True
        timer.start()
        try:
            data = _read_upto(reader, INDEX_MAX_BYTES + 1)
            failure = reader.failure() if len(data) <= INDEX_MAX_BYTES else None
        finally:
            timer.cancel()
            reader.close()
    except (OSError, ValueError) as exc:
        raise DatasetNotFoundError(f"{url}: cannot read ({_short(exc)}); check the URL, path or command") from exc
    if failure is not None:
        raise DatasetNotFoundError(f"{url}: cannot read ({failure}); check the URL, path or command")
    if len(data) > INDEX_MAX_BYTES:
        raise FormatError(f"{url}: larger than {INDEX_MAX_BYTES} bytes; this is not an INFER index")
    if not data:
        raise DatasetNotFoundError(f"{url}: empty or missing; check the URL, path or command")
    return DatasetIndex.from_json(data, where=url), data


def _read_upto(reader: RawReader, limit: int) -> bytes:
    """Bytes from ``reader`` until its end or until ``limit`` bytes arrived."""
    parts, n = [], 0
    while n < limit:
        block = reader.read(min(CHUNK, limit - n))
        if not block:
            break
        parts.append(block)
        n += len(block)
    return b"".join(parts)


def _short(exc: BaseException) -> str:
    """A one-line description of ``exc``."""
    text = (exc.strerror if isinstance(exc, OSError) and exc.strerror else " ".join(str(exc).split())) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


class CheckedStream:
    """A file object over one shard's bytes: counted, hashed, bounded by the index, optionally cached.

    Args:
        url: where the bytes come from (named in every error).
        entry: the shard's index entry (declared size and sha256).
        stream: the open byte stream, or None to open ``url`` with ``gopen``.
        retries: how often to reopen ``url`` after the stream ended early or failed; the bytes
            already read are skipped on the new stream, so the hash covers every byte once.
        cache_to: write the bytes to a temporary file next to this path and give it this name
            once size and sha256 match (:meth:`finish`).
    """

    def __init__(self, url: str, entry: ShardEntry, stream: IO[bytes] | None = None, *, retries: int = 0,
                 cache_to: Path | None = None, opener: Callable[[str], IO[bytes]] = _gopen, verify: bool = True) -> None:
        self.url, self.entry, self.retries, self.opener, self.verify = url, entry, retries, opener, verify
        self.stream = RawReader(stream if stream is not None else self._open())
        self.expired = False
        self._timer: threading.Timer | None = None
        if self.stream.proc is not None:  # a command or a download: the whole shard gets one deadline
            self._timer = threading.Timer(fetch_deadline(entry.bytes), self._expire)
            self._timer.daemon = True
            self._timer.start()
        self.nbytes = 0
        self.sha = hashlib.sha256()
        self.cache_to = cache_to
        self._tmp: Path | None = None
        self._tee: IO[bytes] | None = None
        if cache_to is not None:
            self._tmp = cache_to.with_name(f".{cache_to.name}.{os.getpid()}.partial")
            self._tee = open(self._tmp, "wb")

    def _expire(self) -> None:
        self.expired = True
        self.stream.kill()

    def _open(self) -> IO[bytes]:
        try:
            return self.opener(self.url)
        except (OSError, ValueError) as exc:
            raise DatasetNotFoundError(f"{self.url}: cannot open shard ({_short(exc)}); check the URL, path or command") from exc

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that remain when negative), never past the declared size."""
        left = self.entry.bytes - self.nbytes
        want = left if size is None or size < 0 else min(size, left)
        if want <= 0:
            return b""
        data = self._read_some(want)
        self.sha.update(data)
        self.nbytes += len(data)
        if self._tee is not None:
            self._tee.write(data)
        return data

    def _read_some(self, want: int) -> bytes:
        """At least one byte, reopening up to ``retries`` times.

        Raises:
            StreamError: the stream ended or failed before the declared size.
        """
        while True:
            error: BaseException | None = None
            try:
                data = self.stream.read(want)
            except (OSError, ValueError) as exc:
                data, error = b"", exc
            if self.expired:
                raise StreamError(f"{self.url}: not complete within its deadline ({self.nbytes} of {self.entry.bytes} bytes); "
                                  f"check the connection, or set {DEADLINE_ENV} (seconds) for a slow link")
            if data:
                return data
            if self.retries <= 0:
                why = _short(error) if error is not None else (self.stream.failure() or "the stream ended")
                if self.nbytes == 0:
                    raise StreamError(f"{self.url}: cannot read the shard ({why}); check the URL, path or command, "
                                      "or pass retries=N to reopen failed streams")
                raise StreamError(f"{self.url}: connection lost after {self.nbytes} of {self.entry.bytes} bytes ({why}); "
                                  "check the connection and retry, or pass retries=N to reopen dropped streams")
            self.retries -= 1
            self._reopen()

    def _reopen(self) -> None:
        """Open the URL again and skip the bytes already read."""
        self.stream.close()
        self.stream = RawReader(self._open())
        skip = self.nbytes
        while skip > 0:
            try:
                got = len(self.stream.read(min(skip, CHUNK)))
            except (OSError, ValueError):
                got = 0
            if got == 0:
                return  # the next read sees the short stream again and retries or raises
            skip -= got

    def finish(self) -> None:
        """Read what remains, then compare size and sha256 with the index; commit the cache file.

        Raises:
            StreamError: the stream ended early.
            IntegrityError: more bytes than declared, or another sha256 (the cache file is removed).
        """
        try:
            while self.read(CHUNK):
                pass
            if self._extra_bytes():
                raise IntegrityError(f"{self.url}: longer than the {self.entry.bytes} bytes {INDEX_FILENAME} declares; "
                                     "the served copy is wrong, re-publish or re-download it")
            got = self.sha.hexdigest()
            if self.verify and got != self.entry.sha256:
                raise IntegrityError(f"{self.url}: sha256 {got[:12]}... does not match {INDEX_FILENAME} "
                                     f"({self.entry.sha256[:12]}...); the served copy is corrupt, re-publish or re-download it")
        except Exception:
            self.close(failed=True)
            raise
        self._commit()
        self.close()

    def _extra_bytes(self) -> bool:
        try:
            return bool(self.stream.read(1))
        except (OSError, ValueError):
            return False  # the declared bytes all arrived and matched; a failing close is no data

    def _commit(self) -> None:
        if self.verify and self._tee is not None and self._tmp is not None and self.cache_to is not None:
            self._tee.close()
            self._tee = None
            os.replace(self._tmp, self.cache_to)
            self._tmp = None

    def close(self, *, failed: bool = False) -> None:
        """Close the stream; an uncommitted cache file is removed (``failed``: the bytes were bad)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._tee is not None:
            self._tee.close()
            self._tee = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
        self.stream.close()


def _close_quietly(stream: Any) -> None:
    """Close a stream; a subprocess's exit status after an early close is not an error here."""
    try:
        stream.close()
    except (OSError, ValueError):
        pass


def locate_shard(location: Location, entry: ShardEntry, cache_dir: Path | None) -> dict[str, Any]:
    """Where to read shard ``entry`` from: ``{"url", "cached", "cache_to"}``.

    With ``cache_dir`` a verified copy there is read (and checked again); otherwise the shard is
    read from ``location`` and, with ``cache_dir``, written to ``cache_dir/<name>`` as it passes.
    """
    if cache_dir is None:
        return {"url": location.url(entry.name), "cached": False, "cache_to": None}
    cached = cache_dir / entry.name
    if cached.is_file():
        return {"url": str(cached), "cached": True, "cache_to": None}
    cache_dir.mkdir(parents=True, exist_ok=True)
    mark_source(cache_dir, location.prefix)
    return {"url": location.url(entry.name), "cached": False, "cache_to": cached}


def checked_stream(url: str, entry: ShardEntry, stream: IO[bytes], *, cached: bool = False,
                   cache_to: Path | None = None, retries: int = 0) -> CheckedStream:
    """The :class:`CheckedStream` over an opened shard (see :func:`locate_shard` for the arguments)."""
    if cached:
        return _CachedStream(url, entry, stream)
    return CheckedStream(url, entry, stream, retries=retries, cache_to=cache_to)


class _CachedStream(CheckedStream):
    """A verified cache file read again: a failure now means the copy went bad, so it is removed."""

    def close(self, *, failed: bool = False) -> None:
        super().close(failed=failed)
        if failed:
            Path(self.url).unlink(missing_ok=True)
