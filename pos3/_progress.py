"""Progress bars on stderr (tqdm), or nothing at all."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TextIO

__all__ = ["Bar", "Progress"]


class Bar(Protocol):
    def update(self, n: int) -> object: ...


class _Silent:
    def update(self, n: int) -> None:
        pass


class Progress:
    """Makes one bar per operation (bytes, rate, ETA) when enabled; silent otherwise."""

    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream

    @contextmanager
    def bar(self, desc: str, total: int) -> Iterator[Bar]:
        if not self.enabled or total <= 0:
            yield _Silent()
            return
        from tqdm import tqdm

        with tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=True,
                  file=self.stream or sys.stderr, dynamic_ncols=True, mininterval=0.2) as bar:
            yield bar
