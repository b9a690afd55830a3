"""A small generic name -> object registry used for codecs, teachers, sources and presets."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; duplicate names raise, unknown names suggest close matches.

    Args:
        kind: what the entries are, used in messages (``"codec"``, ``"teacher"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``.

        Raises:
            RegistryError: if ``name`` is already registered.
        """

        def add(obj: T) -> T:
            self.add(name, obj)
            return obj

        return add

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` under ``name``.

        Raises:
            RegistryError: if ``name`` is already registered.
        """
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is already registered; pick another name")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        """Return the entry called ``name``.

        Raises:
            RegistryError: for an unknown name, listing the known ones and close matches.
        """
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.list())}.{hint}"
            )
        return self._entries[name]

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted names matching the ``fnmatch`` pattern."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries
