"""A bounded cache: downloaded trees are remembered with their size and last use, and the least
recently used ones are evicted when the cache grows past a limit.

A tree that an open mirror uses — in any process — is pinned by a shared ``flock`` on its pin
file (``<cache_root>/.pos3/pins/``, which names the tree) for the mirror's lifetime: downloaded
trees and upload/sync folders alike. Eviction takes the pins of a tree, of every pinned tree
inside it and of every tree holding it, exclusively and without waiting, so it skips a tree when
any of them is in use. Only trees that `download` placed under the cache root are ever evicted:
uploads, syncs and folders given with ``local=`` are not.

Everything here blocks; the engine calls it from worker threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ._state import StateStore

__all__ = ["CacheEntry", "Pin", "entries", "prune"]

log = logging.getLogger("pos3")


def _pin_path(private: Path, root: Path) -> Path:
    return private / "pins" / (hashlib.sha256(str(root).encode()).hexdigest()[:32] + ".pin")


class Pin:
    """A shared lock that keeps one tree from being evicted while it is held."""

    def __init__(self, private: Path, root: Path) -> None:
        path = _pin_path(private, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        if os.fstat(self._fd).st_size == 0:  # name the tree, so eviction can find pins below a tree
            os.pwrite(self._fd, os.fsencode(str(root)), 0)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _related(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _lock_related(private: Path, root: Path) -> list[int] | None:
    """Take every pin of ``root``, of trees inside it and of trees holding it, exclusively.

    Returns:
        The file descriptors holding the locks, or ``None`` (nothing held) when one of those
        trees is in use by an open mirror.
    """
    pins = {_pin_path(private, root)}
    folder = private / "pins"
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                named = Path(os.fsdecode(Path(entry.path).read_bytes()))
                if named.is_absolute() and _related(named, root):
                    pins.add(Path(entry.path))
    held: list[int] = []
    folder.mkdir(parents=True, exist_ok=True)
    for pin in sorted(pins):
        fd = os.open(pin, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            for other in held:
                os.close(other)
            return None
        held.append(fd)
    return held


def _is_pinned(private: Path, root: Path) -> bool:
    held = _lock_related(private, root)
    for fd in held or ():
        os.close(fd)
    return held is None


@dataclass(frozen=True)
class CacheEntry:
    """One downloaded tree in the cache.

    Attributes:
        path: The local folder (or file).
        bytes: Its size when it was last downloaded.
        last_used: When a mirror last downloaded it (seconds since the epoch).
        pinned: Whether an open mirror (in any process) uses it now.
    """

    path: Path
    bytes: int
    last_used: float
    pinned: bool


def _inside(cache_root: Path, path: Path) -> bool:
    root = os.path.realpath(cache_root)
    real = os.path.realpath(path)
    return real != root and real.startswith(root.rstrip("/") + "/") and not real.startswith(
        os.path.join(root, ".pos3")
    )


def entries(cache_root: Path, store: StateStore | None = None) -> list[CacheEntry]:
    """The downloaded trees of a cache, least recently used first (missing ones are forgotten)."""
    private = cache_root / ".pos3"
    own = store is None
    store = store or StateStore(private / "state.db")
    try:
        out: list[CacheEntry] = []
        for path, size, used in store.trees():
            p = Path(path)
            if not p.exists():
                store.forget_tree(p)
                continue
            out.append(CacheEntry(p, size, used, _is_pinned(private, p)))
        return out
    finally:
        if own:
            store.close()


def prune(cache_root: Path, max_bytes: int, store: StateStore | None = None) -> list[CacheEntry]:
    """Evict least recently used, unpinned trees until the cache holds at most ``max_bytes``.

    Returns:
        The evicted trees.
    """
    private = cache_root / ".pos3"
    own = store is None
    store = store or StateStore(private / "state.db")
    try:
        current = entries(cache_root, store)
        total = sum(e.bytes for e in current)
        evicted: list[CacheEntry] = []
        for entry in current:
            if total <= max_bytes:
                break
            if entry.pinned or not _inside(cache_root, entry.path):
                continue
            held = _lock_related(private, entry.path)
            if held is None:
                continue
            try:
                if entry.path.is_dir() and not entry.path.is_symlink():
                    shutil.rmtree(entry.path)
                else:
                    entry.path.unlink(missing_ok=True)
                store.forget_tree(entry.path)
            finally:
                for fd in held:
                    os.close(fd)
            total -= entry.bytes
            evicted.append(entry)
            log.info("pos3 cache: evicted %s (%d bytes, least recently used)", entry.path, entry.bytes)
        return evicted
    finally:
        if own:
            store.close()
