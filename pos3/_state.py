"""The state store (what was last seen in sync) and the per-root lock.

The store is one SQLite file in the cache's private folder (``<cache_root>/.pos3/state.db``),
outside every mirrored tree, in WAL mode, written in transactions. A missing, corrupt or
older-format store is moved aside and rebuilt empty: pos3 then decides on content, never crashes.

The lock is an exclusive ``flock`` per local root, held while one download or upload of that
root runs. Another process (or mirror) waits for it, up to ``lock_timeout`` seconds, then gets
`LockTimeoutError`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

import anyio

from ._errors import LockTimeoutError
from ._plan import Record

__all__ = ["StateStore", "root_lock"]

log = logging.getLogger("pos3")

# 2: each record keeps the file's ctime and when its stat was taken (racy-clean rule).
SCHEMA_VERSION = 2
_COLUMNS = "path, key, etag, size, local_size, mtime_ns, inode, xxh3, last_modified, checksum, ctime_ns, recorded_ns"


class StateStore:
    """Records by absolute local path. Thread-safe; every method blocks (use worker threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = self._open()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _init(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
            row = db.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
            if row is not None and row[0] != str(SCHEMA_VERSION):
                db.execute("DROP TABLE IF EXISTS files")
            db.execute(
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, key TEXT NOT NULL, etag TEXT NOT NULL,"
                " size INTEGER NOT NULL, local_size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,"
                " inode INTEGER NOT NULL, xxh3 TEXT NOT NULL, last_modified TEXT NOT NULL DEFAULT '',"
                " checksum TEXT NOT NULL DEFAULT '', ctime_ns INTEGER NOT NULL DEFAULT 0,"
                " recorded_ns INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS trees (path TEXT PRIMARY KEY, bytes INTEGER NOT NULL,"
                " last_used REAL NOT NULL) WITHOUT ROWID"
            )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("SELECT count(*) FROM files").fetchone()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = self._connect()
            self._init(db)
            return db
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}-{os.getpid()}")
            log.warning("pos3 state store %s is unreadable (%s); rebuilding it (old copy: %s)", self.path, exc, aside)
            with contextlib.suppress(Exception):
                db.close()
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                with contextlib.suppress(FileNotFoundError):
                    os.replace(src, str(aside) + suffix)
            db = self._connect()
            self._init(db)
            return db

    def load(self, root: Path) -> dict[str, Record]:
        """Records of ``root`` and every file below it, by path relative to ``root``."""
        base = str(root)
        lo, hi = base + "/", base + "0"  # "0" sorts right after "/"
        cut = len(lo)
        new = tuple.__new__
        with self._lock:
            try:
                # Two plain lookups of the primary key: one "path = ? OR range" query costs a
                # third more (SQLite merges the two index scans through a temporary row set).
                # Rows become records as they come: the rows of a large tree are never all held.
                cursor = self._db.execute(f"SELECT {_COLUMNS} FROM files WHERE path >= ? AND path < ?", (lo, hi))
                out: dict[str, Record] = {row[0][cut:]: new(Record, row[1:]) for row in cursor}
                row = self._db.execute(f"SELECT {_COLUMNS} FROM files WHERE path = ?", (base,)).fetchone()
            except sqlite3.DatabaseError as exc:
                log.warning("pos3 state store %s unreadable (%s); deciding on content", self.path, exc)
                return {}
        if row is not None:
            out[""] = new(Record, row[1:])
        return out

    def write(self, root: Path, put: Iterable[tuple[str, Record]], drop: Iterable[str] = ()) -> None:
        """In one transaction: store records (by relative path) and forget others."""
        base = str(root)

        def full(rel: str) -> str:
            return f"{base}/{rel}" if rel else base

        rows = [
            (full(rel), r.key, r.etag, r.size, r.local_size, r.mtime_ns, r.inode, r.xxh3, r.last_modified, r.checksum,
             r.ctime_ns, r.recorded_ns)
            for rel, r in put
        ]
        gone = [(full(rel),) for rel in drop]
        if not rows and not gone:
            return
        self._transaction([
            ("DELETE FROM files WHERE path = ?", gone),
            (f"INSERT OR REPLACE INTO files ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows),
        ])

    def _transaction(self, statements: list[tuple[str, Sequence[Sequence[object]]]]) -> None:
        """Run ``(sql, rows)`` pairs (each statement once per row) in one transaction.

        A write that fails is logged, never raised: losing records only costs re-checking
        content later, never a transfer.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for sql, rows in statements:
                        if rows:
                            self._db.executemany(sql, rows)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                log.warning("pos3 could not write the state store %s: %s", self.path, exc)

    def touch_tree(self, root: Path, size: int, when: float) -> None:
        """Remember a downloaded tree, its size in bytes and when it was last used."""
        self._transaction([("INSERT OR REPLACE INTO trees VALUES (?, ?, ?)", [(str(root), size, when)])])

    def trees(self) -> list[tuple[str, int, float]]:
        """Every remembered tree: ``(path, bytes, last_used)``, least recently used first."""
        with self._lock:
            try:
                rows = self._db.execute("SELECT path, bytes, last_used FROM trees ORDER BY last_used, path").fetchall()
            except sqlite3.DatabaseError:
                return []
        return [(str(p), int(b), float(t)) for p, b, t in rows]

    def forget_tree(self, root: Path) -> None:
        """Drop a tree and every record below it (after it was evicted)."""
        base = str(root)
        self._transaction([
            ("DELETE FROM trees WHERE path = ?", [(base,)]),
            ("DELETE FROM files WHERE path = ? OR (path >= ? AND path < ?)", [(base, base + "/", base + "0")]),
        ])

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._db.close()


def _lock_path(private: Path, root: Path) -> Path:
    return private / "locks" / (hashlib.sha256(str(root).encode()).hexdigest()[:32] + ".lock")


@contextlib.asynccontextmanager
async def root_lock(private: Path, root: Path, timeout: float) -> AsyncIterator[None]:
    """Hold the exclusive lock of ``root`` (waits up to ``timeout`` seconds)."""
    path = _lock_path(private, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        f"{root}: another pos3 process or mirror is using this folder; waited {timeout:g} s "
                        f"(lock file {path}). Set lock_timeout= to wait longer."
                    ) from None
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.25)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
