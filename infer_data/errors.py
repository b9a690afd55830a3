"""The exception hierarchy: every user-facing failure is one of these, with a one-line message.

Each message names the file or argument, says what is wrong and what to do. The classes also
subclass the matching built-in so existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations


class InferError(Exception):
    """Base class of every error this project raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FormatError(InferError, ValueError):
    """A shard, member or index does not follow the format (names, shapes, dtypes, schema)."""


class UnsupportedVersionError(FormatError):
    """The index declares a format name or major version this reader cannot read."""


class IntegrityError(InferError, ValueError):
    """A shard's bytes do not match the sha256 or size the index declares."""


class CodecError(InferError, ValueError):
    """An unknown codec, or a member that fails to decode."""


class RegistryError(InferError, KeyError):
    """An unknown or duplicate name in a registry."""

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return self.message


class ConfigError(InferError, ValueError):
    """An invalid configuration value or command-line argument."""


class DatasetNotFoundError(InferError, FileNotFoundError):
    """A path that should hold a distilled dataset or a source dataset does not."""


class LimitError(InferError, ValueError):
    """A declared size beyond what this reader accepts (``INFER_MAX_BYTES`` or a format cap)."""


def quote(name: object, limit: int = 120) -> str:
    """``name`` as a quoted, single-line, printable string for messages (like ``repr`` of a str).

    Control characters, newlines and ANSI escapes come out as ``\\n``, ``\\x1b`` and so on, so a
    hostile file or member name cannot forge lines or colours in a message; names longer than
    ``limit`` characters are cut with ``...``.

    Example:
        >>> quote("g000001.base.png"), quote("a\\nOK"), quote("\\x1b[31mred")
        ("'g000001.base.png'", "'a\\\\nOK'", "'\\\\x1b[31mred'")
    """
    text = str(name)
    cut = text if len(text) <= limit else text[:limit] + "..."
    return repr(cut)


def plain(name: object) -> str:
    """``name`` as is when it is a plain ASCII name (letters, digits, ``._-``), else :func:`quote` of it.

    Example:
        >>> plain("g000003"), plain("g0\\n")
        ('g000003', "'g0\\\\n'")
    """
    text = str(name)
    return text if text and len(text) <= 120 and all(c.isascii() and (c.isalnum() or c in "._-") for c in text) else quote(text)
