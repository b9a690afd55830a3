"""Reader limits: the absolute cap on declared sizes (``INFER_MAX_BYTES``) and strict JSON parsing.

Everything a reader allocates, decompresses or downloads is bounded by sizes the index declares;
those sizes are in turn capped here, before anything is read, so an index that claims a 30000 x
30000 image or a 1 TB shard is refused instead of obeyed. ``INFER_MAX_BYTES`` (bytes, default
1 GiB; suffixes ``K``, ``M``, ``G`` for powers of 1024) bounds

- the decoded size of one group (bases uint8 + compensators float32 + labels float32), which
  sets the reader's peak memory (see docs/security.md for the measured function), and
- the declared size of one shard, the most a URL mirror or a stream fetches for one file.

JSON from shards and indexes is parsed with :func:`load_json`: no ``NaN``/``Infinity``, integers
of at most 40 digits, finite floats, nesting at most :data:`JSON_MAX_DEPTH` deep.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from .errors import ConfigError, FormatError

MAX_BYTES_ENV = "INFER_MAX_BYTES"
DEFAULT_MAX_BYTES = 1 << 30
JSON_MAX_DEPTH = 64
JSON_MAX_INT_DIGITS = 40
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def max_bytes() -> int:
    """The cap on one group's decoded bytes and one shard's declared bytes: ``$INFER_MAX_BYTES`` or 1 GiB.

    Example:
        >>> max_bytes() >= 1
        True

    Raises:
        ConfigError: the variable is set but is not a positive size such as ``2G`` or ``500000000``.
    """
    text = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    scale = _UNITS.get(text[-1].upper(), 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit() or int(digits) < 1 or len(digits) > 20:
        raise ConfigError(f"{MAX_BYTES_ENV}={text!r}: not a positive size in bytes (e.g. 2G, 512M or 1000000000); fix or unset it")
    return int(digits) * scale


class _JsonReject(ValueError):
    """A JSON token the strict parser refuses (raised from the parser hooks)."""


def _reject_constant(name: str) -> Any:
    raise _JsonReject(f"{name} is not allowed")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > JSON_MAX_INT_DIGITS:
        raise _JsonReject(f"an integer of {len(text)} digits (at most {JSON_MAX_INT_DIGITS})")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _JsonReject(f"number {text[:20]} is out of range")
    return value


def _depth(obj: Any) -> int:
    """Nesting depth of lists and dicts in ``obj`` (iterative, so deep input cannot recurse)."""
    deepest, todo = 0, [(obj, 1)]
    while todo:
        node, d = todo.pop()
        if isinstance(node, (list, dict)):
            deepest = max(deepest, d)
            if d > JSON_MAX_DEPTH:
                return d
            todo.extend((v, d + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def load_json(data: bytes | str, where: str) -> Any:
    """Parse JSON strictly (see the module docstring).

    Raises:
        FormatError: invalid UTF-8 or JSON, a refused token, or nesting deeper than allowed, naming ``where``.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        obj = json.loads(text, parse_constant=_reject_constant, parse_int=_bounded_int, parse_float=_finite_float)
    except _JsonReject as exc:
        raise FormatError(f"{where}: refused JSON ({exc}); the file is corrupt or hostile, re-download it") from None
    except (ValueError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else " ".join(str(exc).split())[:160]
        raise FormatError(f"{where}: not valid JSON ({why}); re-download or rewrite it") from None
    if _depth(obj) > JSON_MAX_DEPTH:
        raise FormatError(f"{where}: JSON nested more than {JSON_MAX_DEPTH} levels deep; the file is corrupt or hostile")
    return obj
