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
import dataclasses
import fcntl
import hashlib
import logging
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._keys import RESERVED_NAME
from ._state import StateStore

__all__ = ["CacheEntry", "Pin", "choose_evictions", "entries", "prune", "total_bytes"]

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
        bytes: What it holds on disk now (the apparent size of its files, as ``du -b``), trees
            downloaded inside it included.
        last_used: When a mirror last downloaded it or a tree inside it (seconds since the epoch).
        pinned: Whether an open mirror (in any process) uses it, a tree inside it or a tree
            holding it now: it cannot be evicted.
        outer: The cached tree that holds this one (a file or folder downloaded inside a tree
            that was downloaded whole), or ``None``. Its bytes are counted once, in ``outer``.
    """

    path: Path
    bytes: int
    last_used: float
    pinned: bool
    outer: Path | None = None


def total_bytes(trees: Sequence[CacheEntry]) -> int:
    """What the cache holds: every tree counted once (nested trees are inside their holder)."""
    return sum(e.bytes for e in trees if e.outer is None)


def choose_evictions(trees: Sequence[CacheEntry], max_bytes: int) -> list[CacheEntry]:
    """The trees to evict, least recently used first, until at most ``max_bytes`` remain.

    Pure: decides from the entries alone. A pinned tree is never chosen. A nested tree's bytes
    count once; evicting a tree frees what is left of it after the trees inside it that were
    already chosen, and a tree inside one already chosen is gone with it.
    """
    total = total_bytes(trees)
    chosen: list[CacheEntry] = []
    for e in sorted(trees, key=_lru_order):
        if total <= max_bytes:
            break
        if e.pinned or any(_related_inside(c.path, e.path) for c in chosen):
            continue
        inner = [c for c in chosen if _related_inside(e.path, c.path)]
        total -= e.bytes - sum(c.bytes for c in inner)
        chosen = [c for c in chosen if c not in inner] + [e]
    return chosen


def _lru_order(e: CacheEntry) -> tuple[float, int, str]:
    """Least recently used first; on a tie (a holder shares the last use of a tree inside it),
    the inner tree first, so the smaller eviction is tried before its holder."""
    return (e.last_used, -len(e.path.parts), str(e.path))


def _related_inside(holder: Path, path: Path) -> bool:
    return holder == path or holder in path.parents


def _inside(cache_root: Path, path: Path) -> bool:
    root = os.path.realpath(cache_root)
    real = os.path.realpath(path)
    return real != root and real.startswith(root.rstrip("/") + "/") and not real.startswith(
        os.path.join(root, ".pos3")
    )


def _disk_sizes(trees: Sequence[Path]) -> dict[Path, int]:
    """The apparent size of every tree's files now on disk; each folder is walked once, and a
    file counts for every listed tree that holds it. Staging folders and symlinks are skipped."""
    sizes = dict.fromkeys(trees, 0)
    listed = {str(t): t for t in trees}
    tops = [t for t in trees if not any(o != t and o in t.parents for o in trees)]
    for top in tops:
        try:
            st = os.lstat(top)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            sizes[top] += st.st_size
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        stack: list[tuple[str, tuple[Path, ...]]] = [(str(top), (top,))]
        while stack:
            folder, holders = stack.pop()
            try:
                it = os.scandir(folder)
            except OSError:
                continue
            with it:
                for entry in it:
                    if entry.name == RESERVED_NAME:
                        continue
                    inner = listed.get(entry.path)
                    here = (*holders, inner) if inner is not None else holders
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append((entry.path, here))
                        elif entry.is_file(follow_symlinks=False):
                            size = entry.stat(follow_symlinks=False).st_size
                            for tree in here:
                                sizes[tree] += size
                    except OSError:
                        continue
    return sizes


def entries(cache_root: Path, store: StateStore | None = None) -> list[CacheEntry]:
    """The downloaded trees of a cache, least recently used first (missing ones are forgotten).

    Sizes are measured on disk now, not taken from the records: a tree downloaded inside
    another one (a file of a dataset fetched on its own) is part of its holder and counted once.
    """
    private = cache_root / ".pos3"
    own = store is None
    store = store or StateStore(private / "state.db")
    try:
        rows: list[tuple[Path, float]] = []
        for path, _size, used in store.trees():
            p = Path(path)
            if not os.path.lexists(p):
                store.forget_tree(p)
                continue
            rows.append((p, used))
        paths = [p for p, _ in rows]
        sizes = _disk_sizes(paths)
        out: list[CacheEntry] = []
        for p, used in rows:
            holders = [o for o in paths if o in p.parents]
            outer = min(holders, key=lambda o: len(o.parts)) if holders else None
            last = max([used] + [u for q, u in rows if p in q.parents])  # using a tree inside uses this one
            out.append(CacheEntry(p, sizes[p], last, _is_pinned(private, p), outer))
        out.sort(key=_lru_order)
        return out
    finally:
        if own:
            store.close()


def prune(cache_root: Path, max_bytes: int, store: StateStore | None = None) -> list[CacheEntry]:
    """Evict least recently used, unpinned trees until the cache holds at most ``max_bytes``.

    Each tree is evicted holding the pins of it and of every related tree exclusively (the lock a
    mirror holds shared from before its download starts until it closes), so a tree that a mirror
    is downloading into, or has open, is never deleted.

    Returns:
        The evicted trees.
    """
    private = cache_root / ".pos3"
    own = store is None
    store = store or StateStore(private / "state.db")
    try:
        current = entries(cache_root, store)
        candidates = [e if _inside(cache_root, e.path) else dataclasses.replace(e, pinned=True) for e in current]
        evicted: list[CacheEntry] = []
        for entry in choose_evictions(candidates, max_bytes):
            held = _lock_related(private, entry.path)
            if held is None:  # pinned since it was listed
                continue
            try:
                if entry.path.is_dir() and not entry.path.is_symlink():
                    shutil.rmtree(entry.path)
                else:
                    entry.path.unlink(missing_ok=True)
                for inner in current:
                    if inner.path == entry.path or entry.path in inner.path.parents:
                        store.forget_tree(inner.path)
            finally:
                for fd in held:
                    os.close(fd)
            evicted.append(entry)
            log.info("pos3 cache: evicted %s (%d bytes, least recently used)", entry.path, entry.bytes)
        return evicted
    finally:
        if own:
            store.close()
