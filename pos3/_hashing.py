"""Content fingerprints: xxh3-128 (pos3's own) and MD5 (to compare with single-part ETags).

Everything here is blocking and runs in worker threads, never on the event loop.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import xxhash

__all__ = ["CHUNK", "Hasher", "file_digests", "is_md5_etag"]

CHUNK = 1 << 20
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")


def is_md5_etag(etag: str) -> bool:
    """Whether an ETag is the plain MD5 of the content (single-part, unencrypted upload)."""
    return bool(_MD5_ETAG.match(etag))


class Hasher:
    """xxh3-128, and MD5 when asked, fed chunk by chunk as bytes stream in."""

    __slots__ = ("_md5", "_xxh")

    def __init__(self, md5: bool = False) -> None:
        self._xxh = xxhash.xxh3_128()
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None

    def update(self, data: bytes | memoryview) -> None:
        self._xxh.update(data)
        if self._md5 is not None:
            self._md5.update(data)

    @property
    def xxh3(self) -> str:
        return self._xxh.hexdigest()

    @property
    def md5(self) -> str | None:
        return None if self._md5 is None else self._md5.hexdigest()


def file_digests(path: Path, md5: bool = False) -> Hasher:
    """Hash a whole file (blocking; call it from a worker thread)."""
    hasher = Hasher(md5=md5)
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            hasher.update(view[:n])
    return hasher
