"""(pure) Docstrings written once: the sync facade's functions take their sections from AsyncMirror.

The facade's static docstrings hold a one-line summary and a link (that is what the API
reference renders); at import, `forward_doc` appends the ``Args:`` (and following) sections of
the async method they forward to, so ``help(pos3.download)`` and editors show the full text
without a second hand-written copy that could drift.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["forward_doc", "sections"]

F = TypeVar("F", bound=Callable[..., Any])


def sections(doc: str, *, only_args: bool = False) -> str:
    """The Google-style sections of ``doc`` from ``Args:`` on (only that section with ``only_args``)."""
    lines = inspect.cleandoc(doc).splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    end = len(lines)
    if only_args:
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i].strip() and not lines[i].startswith(" ")), len(lines))
    return "\n".join(lines[start:end]).rstrip()


def forward_doc(source: object, *, only_args: bool = False) -> Callable[[F], F]:
    """Add the sections of ``source``'s docstring to the decorated function's own."""

    def decorate(fn: F) -> F:
        own = inspect.cleandoc(fn.__doc__ or "").splitlines()
        added = sections(inspect.getdoc(source) or "", only_args=only_args).splitlines()
        # Before the function's own Returns/Raises, as a Google-style docstring orders them.
        at = next((i for i, line in enumerate(own) if line in ("Returns:", "Raises:")), len(own))
        head = own[:at] if at == 0 or own[at - 1] == "" else [*own[:at], ""]
        fn.__doc__ = "\n".join([*head, *added, "", *own[at:]]).rstrip() + "\n"
        return fn

    return decorate
