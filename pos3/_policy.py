"""(pure) The decisions of a transfer: part sizes, which range comes next, retries, resume, settling.

No I/O and no aiobotocore import: the transfer modules (`pos3._transfer`) ask these functions
and carry the answer out, and `tests/unit/test_policy.py` checks them without a server.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable

from ._errors import IntegrityError
from ._plan import LocalFile

__all__ = [
    "MAX_DOWNLOAD_PART",
    "MAX_UPLOAD_PARTS",
    "SMALL_OBJECT",
    "body_in_memory",
    "check_body",
    "download_part_size",
    "is_changed_version",
    "is_multipart",
    "is_ranged",
    "journal_fits",
    "may_retry_body",
    "part_count",
    "part_length",
    "part_span",
    "parts_todo",
    "retry_delay",
    "same_state",
    "settle_cutoff",
    "unsettled",
    "upload_kept_still",
    "upload_part_size",
]

SMALL_OBJECT = 1 << 20  # bodies up to this size are held whole in memory
MAX_DOWNLOAD_PART = 64 << 20
MAX_UPLOAD_PARTS = 10000  # S3's limit of parts per multipart upload


# ---------------------------------------------------------------------------- sizes


def body_in_memory(size: int) -> bool:
    """Whether an object's body is held whole in memory (written with one thread hop)."""
    return size <= SMALL_OBJECT


def is_ranged(size: int, ranged_threshold: int) -> bool:
    """Whether a download uses parallel ranged GETs (and may resume) instead of one GET."""
    return size >= ranged_threshold


def is_multipart(size: int, multipart_threshold: int) -> bool:
    """Whether an upload is sent as a multipart upload instead of one PUT."""
    return size > multipart_threshold


def download_part_size(size: int, part_size: int, override: int | None = None) -> int:
    """Range size for a large object: a quarter of it, at least ``part_size`` and at most 64 MiB.

    Few, large ranges cost the server least (some servers read the whole object per range);
    several objects still download side by side, and memory does not grow (bodies are streamed
    in 1 MiB chunks). ``override`` (``EngineOptions.download_part_size``) wins when set.
    """
    if override is not None:
        return override
    return max(part_size, min(MAX_DOWNLOAD_PART, math.ceil(size / 4)))


def upload_part_size(size: int, part_size: int) -> int:
    """Part size of a multipart upload: ``part_size``, larger when 10,000 parts would not hold it."""
    return max(part_size, math.ceil(size / MAX_UPLOAD_PARTS))


def part_count(size: int, part: int) -> int:
    """Number of parts of ``part`` bytes covering ``size`` bytes."""
    return math.ceil(size / part)


def part_span(index: int, part: int, size: int) -> tuple[int, int]:
    """First and last byte (inclusive, as in an HTTP Range) of part ``index``."""
    start = index * part
    return start, min(size, start + part) - 1


def part_length(index: int, part: int, size: int) -> int:
    """Bytes in part ``index`` (the last part may be short)."""
    return min(size, (index + 1) * part) - index * part


def parts_todo(count: int, done: Collection[int]) -> list[int]:
    """The parts still to fetch, in order; the first of them learns the ETag when none is known."""
    return [i for i in range(count) if i not in done]


# ---------------------------------------------------------------------------- retry and resume


def may_retry_body(attempts: int, limit: int, *, started: bool = True) -> bool:
    """Whether a broken body is fetched again from the last good byte.

    ``attempts`` counts breaks so far (this one included); a body that broke before its first
    response arrived (``started`` false) is not retried here: botocore already retried it.
    """
    return started and attempts <= limit


def retry_delay(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` of a broken body: doubling from 0.2 s, at most 2 s."""
    return min(0.1 * 2.0**attempt, 2.0)


def journal_fits(found: tuple[object, ...], wanted: tuple[str, int, str, int], file_size: int) -> bool:
    """Whether a resume journal (key, size, etag, part) describes the wanted object version.

    A journal without an ETag, of another version or part size, or beside a partial file of
    the wrong size is never trusted: the download starts over.
    """
    _, size, etag, _ = wanted
    return found == wanted and bool(etag) and file_size == size


def is_changed_version(code: str | None) -> bool:
    """Whether an S3 error code means the object changed since its ETag was learnt (If-Match)."""
    return code in ("PreconditionFailed", "412")


def check_body(url: str, *, got: int, size: int, xxh3: str, md5: str | None, etag: str,
               expected_xxh3: str | None) -> None:
    """Raise `IntegrityError` unless a received body has the listed size and known checksum.

    pos3's own xxh3 fingerprint (object metadata) wins; else a plain MD5 ETag is compared when
    ``md5`` was computed.
    """
    if got != size:
        raise IntegrityError(f"{url}: expected {size} bytes, received {got}")
    if expected_xxh3 and expected_xxh3 != xxh3:
        raise IntegrityError(f"{url}: content does not match its pos3 fingerprint; the file was not placed")
    if not expected_xxh3 and md5 is not None and md5 != etag:
        raise IntegrityError(f"{url}: content does not match its MD5 ETag; the file was not placed")


# ---------------------------------------------------------------------------- settled files


def same_state(a: LocalFile, b: LocalFile) -> bool:
    """Whether two stats of one file show no change (size, mtime and inode)."""
    return (a.size, a.mtime_ns, a.inode) == (b.size, b.mtime_ns, b.inode)


def upload_kept_still(before: LocalFile, after: LocalFile, sent: int) -> bool:
    """Whether a file stayed as it was while ``sent`` bytes of it were uploaded."""
    return (after.size, after.mtime_ns) == (before.size, before.mtime_ns) and after.size == sent


def settle_cutoff(now_ns: int, settle: float) -> int:
    """Files modified after this time (ns) are still settling."""
    return now_ns - int(settle * 1e9)


def unsettled(mtimes: Iterable[tuple[str, int]], cutoff: int) -> set[str]:
    """The names whose modification time is after ``cutoff``: left for a later periodic upload."""
    return {rel for rel, mtime_ns in mtimes if mtime_ns > cutoff}
