"""Progress on stderr: a bar per operation (bytes and files), then a one-line summary.

Bars are drawn only when stderr is a terminal (a log file or a CI job gets no bar control
characters); the command line can force them (``--progress``) and asks for the summary line
even without a terminal, through `cli_mode`. Sizes and rates are in binary units (KiB, MiB/s).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

__all__ = ["Bar", "Progress", "cli_mode", "human_bytes", "human_rate", "summary_line"]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float) -> str:
    """``n`` bytes in binary units: ``"512 B"``, ``"1.5 KiB"``, ``"23.4 MiB"``, ``"1.02 GiB"``."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.2f} {unit}" if abs(value) < 10 else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def human_rate(n: int, seconds: float) -> str:
    """A transfer rate in binary units per second (``"12.3 MiB/s"``)."""
    return f"{human_bytes(n / seconds if seconds > 0 else 0)}/s"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def summary_line(operation: str, files: int, nbytes: int, seconds: float, unchanged: int = 0,
                 skipped: int = 0) -> str:
    """The one line printed when an operation ends, e.g.
    ``download s3://b/ds/: 12 files, 3.40 MiB in 1.2 s (2.83 MiB/s); 40 unchanged``."""
    text = f"{operation}: {_plural(files, 'file')}, {human_bytes(nbytes)} in {seconds:.1f} s"
    if nbytes:
        text += f" ({human_rate(nbytes, seconds)})"
    extra = [f"{unchanged} unchanged"] if unchanged else []
    if skipped:
        extra.append(f"{skipped} skipped")
    return text + ("; " + ", ".join(extra) if extra else "")


@dataclass(frozen=True)
class _Mode:
    bars: bool  # draw bars even when stderr is not a terminal
    summary: bool  # print the summary line even when no bar is drawn


_CLI_MODE: ContextVar[_Mode | None] = ContextVar("pos3_progress_mode", default=None)


@contextmanager
def cli_mode(force_bars: bool, summary: bool) -> Iterator[None]:
    """The command line's choice, for the mirrors opened inside: bars forced or not, and the
    summary line printed without a terminal (both off with ``-q``)."""
    token = _CLI_MODE.set(_Mode(force_bars, summary))
    try:
        yield
    finally:
        _CLI_MODE.reset(token)


class Bar(Protocol):
    def update(self, n: int) -> object: ...

    def file_done(self) -> object: ...


class _Silent:
    def update(self, n: int) -> None:
        pass

    def file_done(self) -> None:
        pass


class _Counting:
    """Counts bytes and files, and draws them on a tqdm bar when there is one."""

    def __init__(self, tqdm_bar: Any, files: int) -> None:
        self.bar, self.files = tqdm_bar, files
        self.nbytes = self.done = 0
        self.start = time.monotonic()
        self._drawn = 0.0

    def update(self, n: int) -> None:
        self.nbytes += n
        if self.bar is not None:
            self.bar.update(n)
            self._postfix(False)

    def file_done(self) -> None:
        self.done += 1
        if self.bar is not None:
            self._postfix(self.done == self.files)

    def _postfix(self, final: bool) -> None:
        now = time.monotonic()
        if not final and now - self._drawn < 0.2:
            return
        self._drawn = now
        total = self.bar.total or 0
        text = f"{human_bytes(self.nbytes)}/{human_bytes(total)}, {human_rate(self.nbytes, now - self.start)}"
        if self.files:
            text += f", {self.done}/{self.files} files"
        self.bar.set_postfix_str(text, refresh=final)


class Progress:
    """One bar per operation (bytes, files, rate, ETA) when enabled and stderr is a terminal,
    and a summary line when the operation ends; silent otherwise."""

    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream
        self._mode = _CLI_MODE.get()  # taken when the mirror is made, in the caller's context

    def _draws(self) -> tuple[bool, bool]:
        if not self.enabled:
            return False, False
        stream = self.stream or sys.stderr
        terminal = bool(getattr(stream, "isatty", lambda: False)())
        if self._mode is not None:
            bars = terminal or self._mode.bars
            return bars, bars or self._mode.summary
        return terminal, terminal

    @contextmanager
    def bar(self, desc: str, total: int, files: int = 0, unchanged: int = 0, skipped: int = 0) -> Iterator[Bar]:
        """A bar for one operation of ``total`` bytes in ``files`` files.

        Args:
            desc: What runs (``"download s3://b/ds/"``): the bar's label and the summary's start.
            total: Bytes to transfer.
            files: Files to transfer.
            unchanged: Files found already in sync (for the summary).
            skipped: Files left out this time (for the summary).
        """
        bars, summary = self._draws()
        if not bars and not summary:
            yield _Silent()
            return
        stream = self.stream or sys.stderr
        if bars and total > 0:
            from tqdm import tqdm

            with tqdm(total=total, desc=desc, leave=True, file=stream, dynamic_ncols=True, mininterval=0.2,
                      bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]") as t:
                counting = _Counting(t, files)
                counting._postfix(True)
                yield counting
        else:
            counting = _Counting(None, files)
            yield counting
        if summary:
            line = summary_line(desc, counting.done, counting.nbytes, time.monotonic() - counting.start,
                                unchanged, skipped)
            print(line, file=stream, flush=True)
