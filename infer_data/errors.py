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
