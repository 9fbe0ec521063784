"""Writing downloaded bytes and renaming them into place: blocking helpers for worker threads.

Also the two error sets of the download path: the errors of a broken body (retried from the
last good byte) and the disk errors (named after the file being written).
"""

from __future__ import annotations

import errno
import functools
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from .. import _local
from .._errors import EndpointError
from .._hashing import CHUNK, Hasher
from .._plan import LocalFile, placed_mtime_ns

__all__ = [
    "DISK_ERRNOS",
    "LAST_MODIFIED",
    "body_errors",
    "check_write_and_place",
    "hash_and_write",
    "hash_range",
    "last_modified",
    "mkdir",
    "open_new",
    "place",
    "raise_named",
]


@functools.cache
def body_errors() -> tuple[type[BaseException], ...]:
    """Errors of a response body that broke midway (a GET resumes after them).

    Built on first use, not at import: the aiohttp and botocore classes are imported only once
    a request was made (``import pos3`` stays light).
    """
    import aiohttp
    from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError

    return (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, IncompleteReadError,
            ResponseStreamingError, ReadTimeoutError, ConnectionError, EndpointError, TimeoutError)


LAST_MODIFIED = "__last_modified"  # in a GET's metadata dict: the object's time (ISO 8601), not user metadata


def last_modified(resp: Mapping[str, Any]) -> str:
    """A GET or HEAD answer's Last-Modified as ISO 8601 (``""`` when absent)."""
    stamp = resp.get("LastModified")
    return stamp.isoformat() if stamp is not None and hasattr(stamp, "isoformat") else ""


DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM})


def _name_path(exc: OSError, path: Path, url: str) -> OSError:
    """A local disk error (full, read-only...) that names the file it was writing, else ``exc``."""
    if exc.filename is not None or exc.errno not in DISK_ERRNOS:
        return exc
    return OSError(exc.errno, f"{exc.strerror} (downloading {url})", str(path))


def raise_named(exc: OSError, path: Path, url: str) -> NoReturn:
    """Re-raise ``exc``, as an error naming ``path`` when it is a bare disk error."""
    named = _name_path(exc, path, url)
    if named is exc:
        raise exc
    raise named from exc


def hash_range(fd: int, h: Hasher, start: int, end: int) -> None:
    """Feed bytes ``start..end`` of an open file to ``h`` (from the page cache: just written)."""
    pos = start
    while pos < end:
        data = os.pread(fd, min(CHUNK, end - pos), pos)
        if not data:
            raise OSError(f"file ended at byte {pos} of {end}")
        h.update(data)
        pos += len(data)


def hash_and_write(h: Hasher, fh: BinaryIO, chunk: bytes) -> None:
    """Fingerprint and append one chunk (blocking: a worker thread)."""
    h.update(chunk)
    fh.write(chunk)


def check_write_and_place(
    h: Hasher, data: bytes, verify: Callable[[], None], tmp: Path, final: Path, root: Path, modified: str = ""
) -> LocalFile:
    """Fingerprint a small body, check it, then place it: one worker-thread hop per file."""
    h.update(data)
    verify()
    with open_new(tmp) as fh:
        fh.write(data)
    return place(tmp, final, root, modified)


def open_new(tmp: Path) -> BinaryIO:
    """Open a new partial file for writing (closed by the caller, also on failure).

    Its staging folder is made on first use, when the open finds it missing: its name was chosen
    without I/O (`_local.Staging.new_path`), and this costs no ``mkdir`` per file.
    """
    try:
        return open(tmp, "wb")
    except FileNotFoundError:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        return open(tmp, "wb")


def place(tmp: Path, final: Path, root: Path, modified: str = "") -> LocalFile:
    """Rename a finished temporary file onto its final name (parents made, never outside ``root``).

    The file takes the object's Last-Modified time ``modified`` (ISO 8601) as its mtime, when
    it is past (`placed_mtime_ns`), before the rename: the name never shows another mtime.

    The usual case costs one ``lstat`` per folder below ``root`` and the rename: folders that
    are missing or symlinks go through `_local.ensure_parent` (made, then resolved inside
    ``root``), and a folder standing at the final name fails the rename itself.
    """
    now = time.time_ns()
    mtime = placed_mtime_ns(modified, now)
    if mtime is not None:
        os.utime(tmp, ns=(now, mtime))
    if not _local.plain_parents(root, final):
        _local.ensure_parent(root, final)
    try:
        _local.replace_into(tmp, final)  # EXDEV (a bind mount): through a hidden staging folder beside it
    except IsADirectoryError:
        raise IsADirectoryError(f"{final}: a folder stands where the file goes") from None
    return _local.stat_file(final)


def mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
