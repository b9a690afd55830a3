"""Progress bars on stderr: tqdm on a terminal, one plain line every 10 % in a log.

A tqdm bar redraws itself with carriage returns, which a log file (CI, a batch scheduler's
output, ``infer ... 2> log``) keeps as one huge line of fragments. So when stderr is not a TTY,
:func:`progress_bar` returns a :class:`LineProgress` instead, which writes
``desc: 30% (72/240 img)`` once each time another tenth of the work is done.
"""

from __future__ import annotations

import sys
from typing import IO, Any

LINE_STEP_PERCENT = 10  # a log line each time this many more percent are done


class LineProgress:
    """The part of tqdm's interface the commands use, as plain lines (see the module docstring)."""

    def __init__(self, total: int, *, desc: str, unit: str, initial: int = 0, file: IO[str] | None = None) -> None:
        self.total, self.desc, self.unit, self.n = max(int(total), 0), desc, unit, int(initial)
        self.file = file if file is not None else sys.stderr
        self.postfix = ""
        self._shown = self._tenth()
        self._written: str | None = None  # the postfix of the last line written (None: no line yet)

    def _tenth(self) -> int:
        return 100 * self.n // self.total // LINE_STEP_PERCENT if self.total else 0

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units; print a line when another tenth is complete."""
        self.n += int(n)
        if self._tenth() > self._shown:
            self._shown = self._tenth()
            self._write()

    def _write(self) -> None:
        extra = f" {self.postfix}" if self.postfix else ""
        self._written = self.postfix
        line = f"{self.desc}: {100 * self.n // self.total if self.total else 100}% ({self.n}/{self.total} {self.unit}){extra}"
        print(line, file=self.file, flush=True)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        """Text appended to the next lines."""
        self.postfix = text

    def refresh(self) -> None:
        """Nothing to redraw in a log."""

    def close(self) -> None:
        """Write the final state once more if its postfix changed after the last line (e.g. the last group's count)."""
        if self._written is not None and self._written != self.postfix:
            self._write()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NoProgress(LineProgress):
    """Counts, prints nothing (``--quiet``)."""

    def update(self, n: int = 1) -> None:
        self.n += int(n)


def progress_bar(total: int, *, desc: str, unit: str, initial: int = 0, quiet: bool = False, file: IO[str] | None = None) -> Any:
    """A tqdm bar on ``file`` (default stderr) when it is a terminal, else a :class:`LineProgress`;
    with ``quiet`` a :class:`NoProgress`."""
    stream = file if file is not None else sys.stderr
    if quiet:
        return NoProgress(total, desc=desc, unit=unit, initial=initial, file=stream)
    if not getattr(stream, "isatty", lambda: False)():
        return LineProgress(total, desc=desc, unit=unit, initial=initial, file=stream)
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=stream, dynamic_ncols=True)
