"""Object keys to safe relative paths, and back. Pure.

A key becomes a path only through `relative_path()`: a key that would leave its folder
(``..``, an absolute path, a backslash, a NUL) is refused, and keys that land on the same
path (``a//b`` and ``a/b``) are reported by `find_collisions()` instead of being merged.
The name `RESERVED_NAME` is pos3's own (partial files); a key using it is refused too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from typing import Protocol

from ._errors import UnsafeKeyError

__all__ = ["RESERVED_NAME", "find_collisions", "join_key", "key_paths", "relative_path"]

_MAX_NAME_BYTES = 255

# The staging folder of partial files; scans skip it at every depth, so a key with this
# segment would be re-downloaded forever, and one at the top would be wiped by the clean-up.
RESERVED_NAME = ".pos3-staging"


def relative_path(key: str, prefix: str) -> str:
    """The safe relative POSIX path of ``key`` below ``prefix``.

    Empty segments (``a//b``) collapse; a trailing ``/`` (a directory marker) is dropped.

    Args:
        key: The full object key.
        prefix: The listing prefix ``key`` starts with (``""`` or ending with ``/``).

    Returns:
        The relative path, ``""`` for the marker of the prefix itself.

    Raises:
        UnsafeKeyError: The key would write outside its folder or cannot be a file name.
    """
    if not key.startswith(prefix):
        raise UnsafeKeyError(f"key {key!r} is not below prefix {prefix!r}")
    rest = key[len(prefix) :]
    if _plain(rest):
        return rest
    if "\x00" in rest:
        raise UnsafeKeyError(f"key {key!r}: contains a NUL character")
    if "\\" in rest:
        raise UnsafeKeyError(f"key {key!r}: contains a backslash, which could escape the folder")
    if rest.startswith("/") and not prefix:
        raise UnsafeKeyError(f"key {key!r}: an absolute path")
    parts = [p for p in rest.split("/") if p]
    for part in parts:
        if part in (".", ".."):
            raise UnsafeKeyError(f"key {key!r}: a {part!r} segment would leave the download folder")
        if part == RESERVED_NAME:
            raise UnsafeKeyError(f"key {key!r}: the name {RESERVED_NAME!r} is reserved for pos3's partial files")
        if len(part.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
            raise UnsafeKeyError(f"key {key!r}: a segment is longer than {_MAX_NAME_BYTES} bytes")
    return "/".join(parts)


def _plain(rest: str) -> bool:
    """Whether ``rest`` is already a safe relative path, as most keys are: found by a few scans.

    ASCII, at most `_MAX_NAME_BYTES` long (so no segment is longer), no empty segment, no
    segment starting with a dot (so no ``.`` or ``..``), no reserved name, no NUL, no
    backslash. Anything else takes `relative_path`'s full walk, which decides it the same way.
    """
    return (
        len(rest) <= _MAX_NAME_BYTES
        and rest.isascii()
        and "//" not in rest
        and "/." not in rest
        and "\\" not in rest
        and "\x00" not in rest
        and RESERVED_NAME not in rest
        and rest[:1] not in ("/", ".")
        and rest[-1:] != "/"
    )


def join_key(prefix: str, rel: str) -> str:
    """The object key of relative path ``rel`` below ``prefix`` (``""`` or ending with ``/``)."""
    return prefix + rel


class _Keyed(Protocol):
    @property
    def key(self) -> str: ...


def key_paths(files: Sequence[_Keyed], by_path: Mapping[str, _Keyed], refused: Set[str], prefix: str
              ) -> Iterator[tuple[str, str]]:
    """``(key, relative path)`` of every file but the ``refused`` keys, in listing order, for `find_collisions`.

    Args:
        files: The listed files (unique keys, as S3 lists them).
        by_path: The same files by `relative_path`, but those refused; a later key wins a path.
        refused: Keys `relative_path` refused.
        prefix: The listing prefix.

    When no two keys share a path, ``by_path`` holds every pair already, in the same order:
    a million keys are neither mapped twice nor their pairs held in a list.
    """
    if len(by_path) + len(refused) == len(files):
        return ((f.key, rel) for rel, f in by_path.items())
    return ((f.key, relative_path(f.key, prefix)) for f in files if f.key not in refused)


def find_collisions(pairs: Iterable[tuple[str, str]]) -> list[str]:
    """Messages for keys that map to one local path, or to a file and a folder at once.

    Args:
        pairs: ``(key, relative_path)`` of every file key (not directory markers).

    Returns:
        One message per collision; empty when every key has a path of its own.
    """
    seen: dict[str, str] = {}
    problems: list[str] = []
    for key, rel in pairs:
        other = seen.get(rel)
        if other is not None:
            problems.append(f"keys {other!r} and {key!r} both map to local path {rel!r}")
        else:
            seen[rel] = key
    # Folder -> its nearest ancestor-or-self that is a file's path ("" for none), each folder
    # walked once: a million files in a thousand folders cost one lookup each.
    nearest: dict[str, str] = {}

    def file_above(folder: str) -> str:
        walked: list[str] = []
        found = ""
        while folder:
            hit = nearest.get(folder)
            if hit is not None:
                found = hit
                break
            walked.append(folder)
            if folder in seen:
                found = folder
                break
            folder = folder.rpartition("/")[0]
        for w in walked:
            nearest[w] = found
        return found

    for rel, key in seen.items():
        parent = rel.rpartition("/")[0]
        if not parent:
            continue
        hit = nearest.get(parent)
        if hit is None:
            hit = file_above(parent)
        if hit:
            problems.append(f"key {seen[hit]!r} is a file but key {key!r} needs {hit!r} to be a folder")
    return problems
