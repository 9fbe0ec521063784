"""Exclude patterns: glob matching on relative paths, with directory pruning. Pure.

A pattern is matched against the relative path of a file or folder, both locally and in S3:

* ``*`` matches within one path segment, ``?`` one character, ``[...]`` a character class;
* ``**`` matches any number of whole segments (including none);
* a pattern without a leading ``/`` may match the path's last segments (``*.tmp`` excludes
  ``a/b/c.tmp``; ``logs`` excludes every folder or file named ``logs``), like
  `pathlib.PurePath.match`; a leading ``/`` anchors it at the root (``/logs`` only the top one).

A folder that matches is pruned: nothing below it is transferred or deleted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = ["Excluder"]


def _segment_regex(segment: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(segment):
        c = segment[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = segment.find("]", i + 2 if segment[i + 1 : i + 2] in ("!", "^", "]") else i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = segment[i + 1 : end]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    anchored = pattern.startswith("/")
    segments = [s for s in pattern.strip("/").split("/") if s]
    parts: list[str] = []
    for seg in segments:
        if seg == "**":
            parts.append("(?:[^/]+/)*")
        else:
            parts.append(_segment_regex(seg) + "/")
    body = "".join(parts)
    # Each part ends with "/": match against "path/" so the last segment ends the same way.
    prefix = "" if anchored else "(?:[^/]+/)*"
    return re.compile(f"^{prefix}{body}$" if body else "^$")


@dataclass(frozen=True)
class Excluder:
    """A set of exclude patterns.

    Attributes:
        patterns: The glob patterns, as given.
    """

    patterns: tuple[str, ...] = ()
    _regexes: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regexes", tuple(_compile(p) for p in self.patterns if p.strip("/")))

    @classmethod
    def of(cls, patterns: str | Sequence[str] | None) -> Excluder:
        """An `Excluder` from ``None``, one pattern or a sequence of patterns."""
        if patterns is None:
            return cls()
        if isinstance(patterns, str):
            return cls((patterns,))
        return cls(tuple(patterns))

    def __bool__(self) -> bool:
        return bool(self._regexes)

    def matches(self, rel: str) -> bool:
        """Whether the relative path ``rel`` itself matches a pattern."""
        if not rel:
            return False
        probe = rel.strip("/") + "/"
        return any(r.match(probe) for r in self._regexes)

    def excluded(self, rel: str) -> bool:
        """Whether ``rel`` is excluded: it matches, or one of its parent folders does."""
        if not self._regexes or not rel:
            return False
        parts = rel.strip("/").split("/")
        return any(self.matches("/".join(parts[: i + 1])) for i in range(len(parts)))

    def filter(self, rels: Iterable[str]) -> list[str]:
        """The relative paths of ``rels`` that are not excluded, in order."""
        if not self._regexes:
            return list(rels)
        cache: dict[str, bool] = {}

        def dir_excluded(d: str) -> bool:
            hit = cache.get(d)
            if hit is None:
                parent = d.rpartition("/")[0]
                hit = (bool(parent) and dir_excluded(parent)) or self.matches(d)
                cache[d] = hit
            return hit

        kept: list[str] = []
        for rel in rels:
            parent = rel.rpartition("/")[0]
            if (parent and dir_excluded(parent)) or self.matches(rel):
                continue
            kept.append(rel)
        return kept
