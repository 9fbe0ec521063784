"""(pure) The decisions of a transfer: part sizes, which range comes next, retries, resume, settling.

No I/O and no aiobotocore import: the transfer modules (`pos3._transfer`) ask these functions
and carry the answer out, and `tests/unit/test_policy.py` checks them without a server.
"""

from __future__ import annotations

import enum
import math
import ssl
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from ._errors import EndpointError, IntegrityError, S3Error
from ._plan import LocalFile

__all__ = [
    "LARGE_STREAMS",
    "MAX_DOWNLOAD_PART",
    "MAX_UPLOAD_PARTS",
    "SMALL_OBJECT",
    "THROTTLE_CODES",
    "Attempts",
    "ETagMismatch",
    "Fault",
    "RetrySettings",
    "after_failure",
    "backoff",
    "body_in_memory",
    "check_body",
    "classify",
    "completed_before",
    "content_range_total",
    "download_part_size",
    "etag_is_md5",
    "is_changed_version",
    "is_multipart",
    "is_ranged",
    "journal_fits",
    "may_repair",
    "part_count",
    "part_length",
    "part_span",
    "parts_to_refetch",
    "parts_todo",
    "repair_part",
    "repair_split",
    "same_state",
    "settle_cutoff",
    "still_settled",
    "throttle_level",
    "throttle_pause",
    "unsettled",
    "upload_kept_still",
    "upload_part_size",
]

SMALL_OBJECT = 1 << 20  # bodies up to this size are held whole in memory
MAX_DOWNLOAD_PART = 64 << 20
LARGE_STREAMS = 8  # ranges in flight shared by the large objects of one download
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


def download_part_size(size: int, part_size: int, override: int | None = None, together: int = 1) -> int:
    """Range size for a large object, one of ``together`` large objects fetched side by side.

    The large objects of one transfer share about `LARGE_STREAMS` ranges: one object alone is
    cut in 8 ranges, two in 4 each, four in 2 each, eight or more are fetched in one range each.
    Ranges are at least ``part_size`` and at most 64 MiB (what a resumed download may have to
    fetch again per range). A large object alone is split because one connection carries a
    bounded rate; several large objects already make several streams, and once the streams fill
    the link more ranges add requests rather than speed. Some servers read the whole object for
    each range (moto does: four 128 MiB objects took 1.4 s in one range each, 2.4 s in four,
    3.4 s in eight).
    Bodies are streamed in 1 MiB chunks, so memory does not grow with the range size.
    ``override`` (``EngineOptions.download_part_size``) wins when set.
    """
    if override is not None:
        return override
    ranges = math.ceil(LARGE_STREAMS / max(1, min(together, LARGE_STREAMS)))
    return max(part_size, min(MAX_DOWNLOAD_PART, math.ceil(size / ranges)))


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


@dataclass(frozen=True, kw_only=True)
class RetrySettings:
    """How hard a transfer tries before an object is reported as failed.

    Attributes:
        no_progress: Attempts in a row that bring no new byte before a broken body is given up
            (an attempt that brings new bytes resets the count).
        repairs: Rounds of fetching again a body that failed its fingerprint, MD5 or checksum
            (a large object fetches again only its parts that did not come identical twice).
        outage_budget: Seconds a transfer keeps retrying connection failures (refused, reset,
            DNS, TLS handshake, no answer) and throttling, counted from the first failure of a
            run of failures; an answer that brings bytes ends the run.
        backoff_base: The first backoff delay (seconds); it doubles at each retry.
        backoff_cap: The longest backoff delay (seconds).
        stall_timeout: Seconds without a byte of a response body before it is aborted and resumed.
    """

    no_progress: int = 3
    repairs: int = 4
    outage_budget: float = 60.0
    backoff_base: float = 0.25
    backoff_cap: float = 5.0
    stall_timeout: float = 15.0


class Fault(enum.Enum):
    """What kind of failure ended an attempt (see `classify`)."""

    BODY = "body"  # the answer came, its body broke or stalled: resumed from the last good byte
    CONNECTION = "connection"  # no answer (refused, reset, DNS, TLS handshake, timeout) or a server error
    THROTTLE = "throttle"  # 503 SlowDown and friends: the whole mirror backs off
    FATAL = "fatal"  # anything else: not retried here


THROTTLE_CODES = frozenset({"SlowDown", "503", "ServiceUnavailable", "Throttling", "ThrottlingException",
                            "RequestLimitExceeded", "TooManyRequests", "429", "RequestThrottled"})  # as in _s3
# Answers that say the server failed this time, not that the request is wrong: sent again, as
# botocore's standard retry mode sends them again, under the outage budget.
SERVER_ERROR_CODES = frozenset({"InternalError", "500", "502", "504", "BadGateway", "GatewayTimeout",
                                "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})


# Foreign network errors, by class name: this module imports neither aiohttp nor botocore.
_NETWORK_ERRORS = frozenset({
    "ClientPayloadError", "ClientConnectionError", "IncompleteReadError", "ResponseStreamingError",
    "ReadTimeoutError", "ConnectTimeoutError", "EndpointConnectionError", "ConnectionClosedError",
    "gaierror", "SSLError",
})


def _cert_failure(exc: BaseException) -> bool:
    """Whether a certificate verification failure is in ``exc``'s chain: never retried."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def classify(exc: BaseException, *, answered: bool) -> Fault:
    """The kind of failure ``exc`` is; ``answered`` tells whether response headers had arrived.

    A broken body (the headers came) is a `Fault.BODY`; a connection-level failure before an
    answer, or a server error (`SERVER_ERROR_CODES`: 500, 502, 504...), is a `Fault.CONNECTION`,
    except a certificate that fails verification, which is a configuration error and fails at
    once (`Fault.FATAL`).
    """
    if _cert_failure(exc):
        return Fault.FATAL
    if isinstance(exc, S3Error) and exc.code in THROTTLE_CODES:
        return Fault.THROTTLE
    if isinstance(exc, IntegrityError):
        return Fault.FATAL
    if isinstance(exc, S3Error) and exc.code in SERVER_ERROR_CODES:
        return Fault.CONNECTION
    if isinstance(exc, S3Error) and not isinstance(exc, EndpointError):
        return Fault.FATAL
    network = isinstance(exc, ConnectionError | TimeoutError | EndpointError) or any(
        c.__name__ in _NETWORK_ERRORS for c in type(exc).__mro__)
    if network:
        return Fault.BODY if answered else Fault.CONNECTION
    return Fault.FATAL


@dataclass(frozen=True)
class Attempts:
    """The retry state of one transfer (a body, a part, a request).

    Attributes:
        no_progress: Attempts in a row that brought no new byte.
        outage_since: Monotonic time of the first failure of the current run of connection or
            throttling failures; ``None`` when the last attempt got an answer.
        retries: Retries since the last progress (the backoff exponent).
    """

    no_progress: int = 0
    outage_since: float | None = None
    retries: int = 0


def backoff(retry: int, rand: float, base: float, cap: float) -> float:
    """Capped exponential backoff with equal jitter: half of ``min(cap, base*2**(retry-1))`` fixed,
    half drawn with ``rand`` in [0, 1). Retry 1 waits 0.125-0.25 s with the defaults, retry 6
    and later 2.5-5 s."""
    ceiling = min(cap, base * 2.0 ** max(0, retry - 1))
    return ceiling / 2 + rand * ceiling / 2


def after_failure(state: Attempts, fault: Fault, *, progressed: bool, now: float, rand: float,
                  settings: RetrySettings) -> tuple[Attempts, float | None]:
    """The retry state after a failed attempt, and the delay before the next one (``None``: give up).

    - An attempt that brought new bytes resets everything: the transfer goes on from there.
    - A body that broke or stalled without a new byte counts toward ``settings.no_progress``.
    - Connection failures and throttling are retried until ``settings.outage_budget`` seconds
      have passed since the first of them; the last delay is shortened so that one attempt is
      made when the budget ends.
    """
    if progressed:
        state = Attempts()
    if fault is Fault.FATAL:
        return state, None
    retries = state.retries + 1
    if fault is Fault.BODY:
        streak = 0 if progressed else state.no_progress + 1
        if streak >= settings.no_progress:
            return replace(state, no_progress=streak), None
        return Attempts(streak, None, retries), backoff(retries, rand, settings.backoff_base, settings.backoff_cap)
    since = state.outage_since if state.outage_since is not None else now
    left = settings.outage_budget - (now - since)
    if left <= 0:
        return replace(state, outage_since=since), None
    delay = min(left, backoff(retries, rand, settings.backoff_base, settings.backoff_cap))
    return Attempts(state.no_progress, since, retries), delay


def may_repair(repairs_done: int, settings: RetrySettings) -> bool:
    """Whether a body that failed its check is fetched once more (``repairs_done`` so far)."""
    return repairs_done < settings.repairs


def repair_split(size: int, repairs: int) -> int | None:
    """Where repair ``repairs`` of a single-request body splits it in two requests (``None``: one).

    A fetch again is shaped unlike the fetches before it, so that a fault tied to a position in
    a response (a middlebox damaging byte N of every answer) cannot give identical bytes twice,
    which `check_body` would take for an ETag that is not an MD5.
    """
    if repairs <= 0 or size < 2:
        return None
    return max(1, size // (repairs + 2))


def repair_part(part: int, size: int, shape: int) -> int:
    """The range size of a large object fetched whole again for the ``shape``-th time (0: ``part``).

    Each shape cuts the object at other boundaries (one more range each time), for the reason
    given in `repair_split`.
    """
    if shape <= 0:
        return part
    return max(1, math.ceil(size / (part_count(size, part) + shape)))


def parts_to_refetch(votes: Mapping[int, Sequence[str]], count: int) -> set[int]:
    """The parts of a damaged large file to fetch again: those whose latest bytes (xxh3) did
    not come identical in an earlier fetch. A part that came twice the same is kept."""
    return {i for i in range(count) if i not in votes or votes[i].count(votes[i][-1]) < 2}


def throttle_level(level: int, *, now: float, resume_at: float, slowed: bool) -> int:
    """The mirror-wide throttle level after an answer.

    A ``slowed`` answer (503 SlowDown) raises the level by one, once per pause: the workers
    that meet the same burst while the pause runs do not raise it again. Any other answer
    lowers it by one after the pause (additive recovery).
    """
    if slowed:
        return level + 1 if now >= resume_at else max(level, 1)
    return max(0, level - 1) if now >= resume_at else level


def throttle_pause(level: int, rand: float, *, base: float = 0.5, cap: float = 20.0) -> float:
    """How long every worker of the mirror waits before its next request at ``level`` (0: none)."""
    return 0.0 if level <= 0 else backoff(level, rand, base, cap)


def journal_fits(found: tuple[object, ...], wanted: tuple[str, int, str, int], file_size: int) -> bool:
    """Whether a resume journal (key, size, etag, part) describes the wanted object version.

    A journal without an ETag, of another version or part size, or beside a partial file of
    the wrong size is never trusted: the download starts over.
    """
    _, size, etag, _ = wanted
    return found == wanted and bool(etag) and file_size == size


def content_range_total(value: str) -> int | None:
    """The total size in a ``Content-Range`` header (``bytes 0-99/1000``), ``None`` if absent or ``*``."""
    _, _, total = value.rpartition("/")
    return int(total) if total.strip().isdigit() else None


def completed_before(code: str | None, found_xxh3: str | None, found_size: int | None, *, xxh3: str,
                     size: int) -> bool:
    """Whether a CompleteMultipartUpload that failed with ``code`` had in fact completed before.

    A Complete whose answer was lost and that is sent again finds the upload gone
    (``NoSuchUpload``). The object then in place (its pos3 fingerprint ``found_xxh3`` and size)
    tells whether it was this upload's: only the very bytes sent count as done.
    """
    return code in ("NoSuchUpload", "404") and bool(xxh3) and found_xxh3 == xxh3 and found_size == size


def is_changed_version(code: str | None) -> bool:
    """Whether an S3 error code means the object changed since its ETag was learnt (If-Match)."""
    return code in ("PreconditionFailed", "412")


class ETagMismatch(IntegrityError):
    """A body whose MD5 differs from its MD5-looking ETag; ``xxh3`` tells two such bodies apart."""

    def __init__(self, message: str, xxh3: str) -> None:
        super().__init__(message)
        self.xxh3 = xxh3


_FOREIGN_ETAG_SSE = ("aws:kms", "aws:kms:dsse")


def etag_is_md5(etag: str, *, sse: str = "", sse_customer: str = "") -> bool:
    """Whether an ETag can be checked as the MD5 of the body.

    Only a plain 32-hex ETag can be; S3 documents that SSE-KMS and SSE-C objects have ETags
    that are not the MD5 of their data (response headers ``x-amz-server-side-encryption:
    aws:kms`` or ``x-amz-server-side-encryption-customer-algorithm``).
    """
    if sse_customer or sse.lower() in _FOREIGN_ETAG_SSE:
        return False
    return len(etag) == 32 and not etag.strip("0123456789abcdef")  # every character a lowercase hex digit


def check_body(url: str, *, got: int, size: int, xxh3: str, md5: str | None, etag: str,
               expected_xxh3: str | None, seen_mismatch: Collection[str] = ()) -> None:
    """Raise `IntegrityError` unless a received body has the listed size and known checksum.

    pos3's own xxh3 fingerprint (object metadata) wins; else a plain MD5 ETag is compared when
    ``md5`` was computed. A body whose MD5 differs from the ETag raises `ETagMismatch`, and is
    fetched again; when the same bytes come again (their xxh3 is in ``seen_mismatch``) the ETag
    is taken for what it is on some servers, not an MD5, and the body passes: a byte damaged in
    transit does not damage the same byte of the next fetch.
    """
    if got != size:
        raise IntegrityError(f"{url}: expected {size} bytes, received {got}")
    if expected_xxh3 and expected_xxh3 != xxh3:
        raise IntegrityError(f"{url}: content does not match its pos3 fingerprint; the file was not placed")
    if not expected_xxh3 and md5 is not None and md5 != etag and xxh3 not in seen_mismatch:
        raise ETagMismatch(f"{url}: content does not match its MD5 ETag; the file was not placed", xxh3)


# ---------------------------------------------------------------------------- settled files


def same_state(a: LocalFile, b: LocalFile) -> bool:
    """Whether two stats of one file show no change (size, mtime and inode)."""
    return (a.size, a.mtime_ns, a.inode) == (b.size, b.mtime_ns, b.inode)


def upload_kept_still(before: LocalFile, after: LocalFile, sent: int) -> bool:
    """Whether a file stayed as it was while ``sent`` bytes of it were uploaded."""
    return (after.size, after.mtime_ns) == (before.size, before.mtime_ns) and after.size == sent


def settle_cutoff(scanned_ns: int, settle: float) -> int:
    """Files modified after this time (ns) are still settling.

    ``scanned_ns`` is the wall clock read just before the scan that stat'ed the files, never a
    later one: a file whose mtime is at or before the cutoff was seen unchanged ``settle`` s
    after its last write. Measured from a later clock (after the listing, the hashing, a loaded
    machine's pauses), a file written meanwhile would pass for one at rest that long.
    """
    return scanned_ns - int(settle * 1e9)


def unsettled(mtimes: Iterable[tuple[str, int]], cutoff: int) -> set[str]:
    """The names whose modification time is after ``cutoff``: left for a later periodic upload."""
    return {rel for rel, mtime_ns in mtimes if mtime_ns > cutoff}


def still_settled(settled: LocalFile | None, before: LocalFile) -> bool:
    """Whether a file about to be read for upload is the state a settle check let through.

    ``settled`` is the file as the scan saw it (``None``: no settle check, any state may be
    sent); ``before`` is its stat just before it is read. A file written since the scan is a
    new state nobody has seen at rest: it is left for a later sync, not sent. (The settled
    state's mtime is ``settle`` s older than the scan, so any later write changes the mtime,
    even on a file system with 2-second timestamps when ``settle`` is at least that.)
    """
    return settled is None or same_state(settled, before)
