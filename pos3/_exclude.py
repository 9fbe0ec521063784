"""Exclude patterns: glob matching on relative paths, with directory pruning. Pure.

A pattern is matched against the relative path of a file or folder, both locally and in S3:

* ``*`` matches within one path segment, ``?`` one character, ``[...]`` a character class
  (``[!...]`` or ``[^...]`` negated, ``a-z`` a range); none of them ever matches a ``/``;
* ``**`` matches any number of whole segments (including none);
* a pattern without a leading ``/`` may match the path's last segments (``*.tmp`` excludes
  ``a/b/c.tmp``; ``logs`` excludes every folder or file named ``logs``), like
  `pathlib.PurePath.match`; a leading ``/`` anchors it at the root (``/logs`` only the top one);
* empty and ``.`` segments are ignored (``./logs`` is ``logs``); a pattern with nothing else
  (``""``, ``/``) excludes nothing.

A folder that matches is pruned: nothing below it is transferred or deleted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = ["Excluder"]


_STAR = "\x00"  # placeholder for a "*" while a segment is translated (never in a pattern)
_NEVER = "(?!)"


def _class_regex(body: str) -> str:
    """The regex of the glob character class ``[body]``: never matches ``/``, never warns.

    A leading ``!`` or ``^`` negates; ``a-z`` is a range, and a reversed range matches nothing
    (as in `fnmatch`); every other character is literal.
    """
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    items: list[str] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            lo, hi = body[i], body[i + 2]
            if lo <= hi:
                items.append(f"{re.escape(lo)}-{re.escape(hi)}")
            i += 3
        else:
            items.append(re.escape(body[i]))
            i += 1
    if negate:
        return "[^" + "".join(items) + "/]"
    return "[" + "".join(items) + "]" if items else _NEVER


def _segment_regex(segment: str) -> str:
    """The regex of one pattern segment, for a path segment that is followed by ``/``.

    ``*`` runs never backtrack into each other: every fixed part between two stars is matched
    at its first place in an atomic group (as `fnmatch` does), so a pattern like ``*a*a*a*b``
    against a long name stays linear instead of exploding.
    """
    out: list[str] = []
    i = 0
    while i < len(segment):
        c = segment[i]
        if c == "*":
            if not out or out[-1] != _STAR:
                out.append(_STAR)
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if segment[j : j + 1] in ("!", "^"):
                j += 1
            if segment[j : j + 1] == "]":
                j += 1
            end = segment.find("]", j)
            if end == -1:
                out.append(re.escape(c))
            else:
                out.append(_class_regex(segment[i + 1 : end]))
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    groups = "".join(out).split(_STAR)
    if len(groups) == 1:
        return groups[0]
    middle = "".join(f"(?>[^/]*?{g})" for g in groups[1:-1])
    return f"{groups[0]}{middle}[^/]*{groups[-1]}"


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    anchored = pattern.startswith("/")
    segments = [s for s in pattern.split("/") if s and s != "."]
    parts: list[str] = []
    any_depth = "(?:[^/]+/)*"
    for seg in segments:
        if seg == "**":
            if not parts or parts[-1] != any_depth:  # "**/**" is "**"
                parts.append(any_depth)
        else:
            parts.append(_segment_regex(seg) + "/")
    # Each part ends with "/": match against "path/" so the last segment ends the same way.
    if not anchored and (not parts or parts[0] != any_depth):
        parts.insert(0, any_depth)
    return re.compile("".join(parts))


@dataclass(frozen=True)
class Excluder:
    """A set of exclude patterns.

    Attributes:
        patterns: The glob patterns, as given.
    """

    patterns: tuple[str, ...] = ()
    _regexes: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kept = [p for p in self.patterns if any(seg not in ("", ".") for seg in p.split("/"))]
        object.__setattr__(self, "_regexes", tuple(_compile(p) for p in kept))

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
        return any(r.fullmatch(probe) for r in self._regexes)

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
