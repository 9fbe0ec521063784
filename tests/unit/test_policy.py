"""The pure decisions of a transfer (pos3._policy, pos3._registry, pos3._background): no server needed."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos3 import AccessDeniedError, EndpointError, IntegrityError, S3Error
from pos3._background import due_uploads, next_wake
from pos3._exclude import Excluder
from pos3._plan import LocalFile
from pos3._policy import (
    LARGE_STREAMS,
    MAX_DOWNLOAD_PART,
    Attempts,
    ETagMismatch,
    Fault,
    RetrySettings,
    after_failure,
    backoff,
    body_in_memory,
    check_body,
    classify,
    completed_before,
    content_range_total,
    download_part_size,
    etag_is_md5,
    is_changed_version,
    is_multipart,
    is_ranged,
    journal_fits,
    may_repair,
    part_count,
    part_length,
    part_span,
    parts_to_refetch,
    parts_todo,
    repair_part,
    repair_split,
    same_state,
    settle_cutoff,
    still_settled,
    throttle_level,
    throttle_pause,
    unsettled,
    upload_kept_still,
    upload_part_size,
)
from pos3._registry import UploadReg, uploads_on_exit
from pos3._transfer.context import Target
from pos3._urls import parse_s3_url

MiB = 1 << 20


def test_large_objects_fetched_together_share_the_ranges_in_flight() -> None:
    size = 128 * MiB
    assert download_part_size(size, 8 * MiB) == 16 * MiB  # alone: 8 ranges
    assert download_part_size(size, 8 * MiB, together=2) == 32 * MiB  # 4 each
    assert download_part_size(size, 8 * MiB, together=4) == 64 * MiB  # 2 each
    assert download_part_size(size, 8 * MiB, together=3) == math.ceil(size / 3)  # 3 each: 9 in all
    for together in (8, 9, 500):
        assert download_part_size(40 * MiB, 8 * MiB, together=together) == 40 * MiB  # one range each


@given(size=st.integers(1, 1 << 40), together=st.integers(0, 10_000))
def test_download_ranges_stay_within_their_bounds(size: int, together: int) -> None:
    part = download_part_size(size, 8 * MiB, together=together)
    assert 8 * MiB <= part <= MAX_DOWNLOAD_PART
    assert part_count(size, part) <= max(LARGE_STREAMS, math.ceil(size / MAX_DOWNLOAD_PART))


def test_download_part_override_wins() -> None:
    assert download_part_size(10 * MiB, 8 * MiB) == 8 * MiB  # never below part_size
    assert download_part_size(10_000 * MiB, 8 * MiB, together=20) == MAX_DOWNLOAD_PART  # never above 64 MiB
    assert download_part_size(10_000 * MiB, 8 * MiB, override=5 * MiB) == 5 * MiB


def test_upload_part_grows_only_when_ten_thousand_parts_would_not_hold_the_file() -> None:
    assert upload_part_size(1000 * MiB, 8 * MiB) == 8 * MiB
    big = 200_000 * MiB
    part = upload_part_size(big, 8 * MiB)
    assert part > 8 * MiB and part_count(big, part) <= 10_000


@given(size=st.integers(1, 10**10), part=st.integers(1, 10**9))
def test_parts_cover_every_byte_once(size: int, part: int) -> None:
    count = part_count(size, part)
    spans = [part_span(i, part, size) for i in range(min(count, 50))]
    assert spans[0][0] == 0
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start == end + 1
    if count <= 50:
        assert spans[-1][1] == size - 1
    assert sum(part_length(i, part, size) for i in range(min(count, 50))) == sum(e - s + 1 for s, e in spans)


def test_parts_todo_skips_what_the_journal_holds_in_order() -> None:
    assert parts_todo(5, {1, 3}) == [0, 2, 4]
    assert parts_todo(3, set()) == [0, 1, 2]
    assert parts_todo(3, {0, 1, 2}) == []


def test_thresholds_choose_the_transfer_kind() -> None:
    assert is_ranged(32 * MiB, 32 * MiB) and not is_ranged(32 * MiB - 1, 32 * MiB)
    assert is_multipart(8 * MiB + 1, 8 * MiB) and not is_multipart(8 * MiB, 8 * MiB)
    assert body_in_memory(MiB) and not body_in_memory(MiB + 1)


SETTINGS = RetrySettings(no_progress=3, repairs=2, outage_budget=30.0, backoff_base=0.25, backoff_cap=5.0)


def test_a_body_that_keeps_bringing_bytes_is_resumed_without_end() -> None:
    state = Attempts()
    for _ in range(100):  # far more breaks than no_progress, each with new bytes
        state, delay = after_failure(state, Fault.BODY, progressed=True, now=0.0, rand=0.5, settings=SETTINGS)
        assert delay is not None and delay <= 0.25
    assert state.no_progress == 0


def test_a_body_gives_up_after_n_attempts_in_a_row_without_progress() -> None:
    state = Attempts()
    state, delay = after_failure(state, Fault.BODY, progressed=True, now=0.0, rand=0.0, settings=SETTINGS)
    delays = []
    for _ in range(SETTINGS.no_progress - 1):
        state, delay = after_failure(state, Fault.BODY, progressed=False, now=0.0, rand=0.0, settings=SETTINGS)
        assert delay is not None
        delays.append(delay)
    assert delays == sorted(delays)
    state, delay = after_failure(state, Fault.BODY, progressed=False, now=0.0, rand=0.0, settings=SETTINGS)
    assert delay is None and state.no_progress == SETTINGS.no_progress
    # one attempt with progress in between starts the count again
    state, delay = after_failure(state, Fault.BODY, progressed=True, now=0.0, rand=0.0, settings=SETTINGS)
    assert delay is not None and state.no_progress == 0


def test_connection_failures_are_retried_until_the_outage_budget_is_spent() -> None:
    state = Attempts()
    now, slept, attempts = 100.0, 0.0, 0
    while True:
        state, delay = after_failure(state, Fault.CONNECTION, progressed=False, now=now, rand=1.0, settings=SETTINGS)
        if delay is None:
            break
        assert delay <= SETTINGS.backoff_cap
        now += delay + 0.01  # the failing attempt itself takes 10 ms
        slept += delay
        attempts += 1
    assert state.outage_since == 100.0
    assert now - 100.0 >= SETTINGS.outage_budget  # retried for the whole budget...
    assert now - 100.0 < SETTINGS.outage_budget + 1  # ...and not longer
    assert attempts <= 2 + SETTINGS.outage_budget / (SETTINGS.backoff_cap / 2)  # capped: few attempts
    # An answer that brings bytes ends the outage: the budget starts afresh at the next failure.
    state, delay = after_failure(state, Fault.CONNECTION, progressed=True, now=now, rand=1.0, settings=SETTINGS)
    assert delay is not None and state.outage_since == now


def test_throttling_shares_the_budget_and_fatal_errors_are_never_retried() -> None:
    state, delay = after_failure(Attempts(), Fault.THROTTLE, progressed=False, now=0.0, rand=0.0, settings=SETTINGS)
    assert delay is not None and state.outage_since == 0.0
    _, delay = after_failure(state, Fault.THROTTLE, progressed=False, now=30.0, rand=0.0, settings=SETTINGS)
    assert delay is None
    _, delay = after_failure(Attempts(), Fault.FATAL, progressed=True, now=0.0, rand=0.0, settings=SETTINGS)
    assert delay is None


@given(retry=st.integers(1, 60), rand=st.floats(0.0, 1.0))
def test_backoff_is_capped_exponential_with_equal_jitter(retry: int, rand: float) -> None:
    d = backoff(retry, rand, 0.25, 5.0)
    ceiling = min(5.0, 0.25 * 2 ** (retry - 1))
    assert ceiling / 2 <= d <= ceiling
    assert backoff(retry + 1, 0.0, 0.25, 5.0) >= backoff(retry, 0.0, 0.25, 5.0)


def test_classify_tells_body_connection_throttle_and_fatal_apart() -> None:
    import ssl

    reset = ConnectionResetError(104, "reset")
    assert classify(reset, answered=False) is Fault.CONNECTION
    assert classify(reset, answered=True) is Fault.BODY
    assert classify(EndpointError("s3://b/k: cannot reach"), answered=False) is Fault.CONNECTION
    assert classify(TimeoutError(), answered=True) is Fault.BODY
    assert classify(S3Error("s3://b/k: slow", code="SlowDown"), answered=False) is Fault.THROTTLE
    assert classify(S3Error("s3://b/k: busy", code="503"), answered=False) is Fault.THROTTLE
    assert classify(AccessDeniedError("s3://b/k: denied", code="AccessDenied"), answered=False) is Fault.FATAL
    assert classify(IntegrityError("s3://b/k: damaged"), answered=True) is Fault.FATAL
    assert classify(OSError(28, "No space left on device"), answered=True) is Fault.FATAL
    cert = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    wrapped = EndpointError("s3://b/k: cannot reach the endpoint")
    wrapped.__cause__ = cert
    assert classify(wrapped, answered=False) is Fault.FATAL  # a bad certificate fails fast
    assert classify(ssl.SSLError(1, "handshake failure"), answered=False) is Fault.CONNECTION


@pytest.mark.parametrize("code", ["InternalError", "500", "502", "504", "RequestTimeout"])
def test_server_errors_are_sent_again_under_the_outage_budget(code: str) -> None:
    # botocore's standard mode sends these again; pos3 goes on after botocore's attempts, or in
    # place of them for direct requests.
    assert classify(S3Error(f"s3://b/k: request failed ({code})", code=code), answered=False) is Fault.CONNECTION
    assert classify(S3Error("s3://b/k: request failed (InvalidRange)", code="InvalidRange"),
                    answered=False) is Fault.FATAL


def test_repairs_are_bounded() -> None:
    assert may_repair(0, SETTINGS) and may_repair(1, SETTINGS)
    assert not may_repair(2, SETTINGS)


def test_a_damaged_large_file_fetches_again_only_parts_that_did_not_come_identical_twice() -> None:
    assert parts_to_refetch({}, 3) == {0, 1, 2}
    assert parts_to_refetch({0: ["a"], 1: ["b"], 2: ["c"]}, 3) == {0, 1, 2}  # one fetch proves nothing
    assert parts_to_refetch({0: ["a", "a"], 1: ["b", "B"], 2: ["c", "c"]}, 3) == {1}
    assert parts_to_refetch({0: ["a", "a"], 1: ["b", "B", "b"], 2: ["c", "c"]}, 3) == set()
    assert parts_to_refetch({0: ["a", "a"], 1: ["b", "B", "x"], 2: ["c", "c"]}, 3) == {1}


@given(size=st.integers(2, 10**9), part=st.integers(1, 10**8))
def test_a_repair_cuts_the_object_elsewhere(size: int, part: int) -> None:
    assert repair_part(part, size, 0) == part
    counts = [part_count(size, repair_part(part, size, shape)) for shape in range(4)]
    assert counts == sorted(counts)
    splits = [repair_split(size, r) for r in range(5)]
    assert splits[0] is None
    assert all(s is not None and 0 < s < size for s in splits[1:])


def test_throttle_level_rises_once_per_pause_and_eases_after_it() -> None:
    assert throttle_level(0, now=10.0, resume_at=0.0, slowed=True) == 1
    assert throttle_level(1, now=10.0, resume_at=12.0, slowed=True) == 1  # same burst, same pause
    assert throttle_level(1, now=13.0, resume_at=12.0, slowed=True) == 2
    assert throttle_level(2, now=11.0, resume_at=12.0, slowed=False) == 2  # still pausing
    assert throttle_level(2, now=13.0, resume_at=12.0, slowed=False) == 1
    assert throttle_level(0, now=13.0, resume_at=12.0, slowed=False) == 0
    assert throttle_pause(0, 0.5) == 0.0
    pauses = [throttle_pause(level, 1.0) for level in range(1, 12)]
    assert pauses == sorted(pauses) and pauses[0] == 0.5 and max(pauses) == 20.0


def test_etag_is_md5_unless_encrypted_with_kms_or_a_customer_key() -> None:
    md5 = "0" * 32
    assert etag_is_md5(md5) and etag_is_md5(md5, sse="AES256")
    assert not etag_is_md5(md5, sse="aws:kms") and not etag_is_md5(md5, sse="aws:kms:dsse")
    assert not etag_is_md5(md5, sse_customer="AES256")
    assert not etag_is_md5("0" * 32 + "-2") and not etag_is_md5("")


def test_content_range_total() -> None:
    assert content_range_total("bytes 0-99/1000") == 1000
    assert content_range_total("bytes */1000") == 1000
    assert content_range_total("bytes 0-99/*") is None
    assert content_range_total("") is None


def test_a_resume_journal_is_trusted_only_for_the_same_version_and_a_full_size_file() -> None:
    wanted = ("k", 100, "etag1", 10)
    assert journal_fits(("k", 100, "etag1", 10), wanted, 100)
    assert not journal_fits(("k", 100, "etag2", 10), wanted, 100)  # another version
    assert not journal_fits(("k", 100, "etag1", 20), wanted, 100)  # another part size
    assert not journal_fits(("k", 100, "etag1", 10), wanted, 50)  # partial file truncated
    assert not journal_fits(("k", 100, "", 10), ("k", 100, "", 10), 100)  # no ETag to guard it
    assert is_changed_version("PreconditionFailed") and is_changed_version("412")
    assert not is_changed_version("NoSuchKey") and not is_changed_version(None)


def test_check_body_prefers_the_pos3_fingerprint_then_the_md5_etag() -> None:
    ok = {"got": 3, "size": 3, "xxh3": "x", "md5": "m", "etag": "m"}
    check_body("s3://b/k", **ok, expected_xxh3=None)  # type: ignore[arg-type]
    check_body("s3://b/k", **{**ok, "etag": "other"}, expected_xxh3="x")  # type: ignore[arg-type]
    with pytest.raises(IntegrityError, match=r"s3://b/k: expected 3 bytes, received 2"):
        check_body("s3://b/k", **{**ok, "got": 2}, expected_xxh3=None)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError, match="pos3 fingerprint"):
        check_body("s3://b/k", **ok, expected_xxh3="y")  # type: ignore[arg-type]
    with pytest.raises(IntegrityError, match="MD5 ETag") as info:
        check_body("s3://b/k", **{**ok, "etag": "other"}, expected_xxh3=None)  # type: ignore[arg-type]
    assert isinstance(info.value, ETagMismatch) and info.value.xxh3 == "x"


def test_an_md5_mismatch_repeated_with_identical_bytes_means_the_etag_is_not_an_md5() -> None:
    ok = {"got": 3, "size": 3, "md5": "m", "etag": "other", "expected_xxh3": None}
    check_body("s3://b/k", xxh3="x", seen_mismatch={"x"}, **ok)  # type: ignore[arg-type]
    with pytest.raises(ETagMismatch):  # other bytes than before: one of the two was damaged
        check_body("s3://b/k", xxh3="y", seen_mismatch={"x"}, **ok)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError, match="fingerprint"):  # never overrides pos3's own fingerprint
        check_body("s3://b/k", got=3, size=3, xxh3="x", md5="m", etag="m", expected_xxh3="z",
                   seen_mismatch={"x"})


def test_settled_files_and_unchanged_uploads() -> None:
    a = LocalFile(10, 1_000, 7)
    assert same_state(a, LocalFile(10, 1_000, 7))
    assert not same_state(a, LocalFile(10, 1_001, 7)) and not same_state(a, LocalFile(10, 1_000, 8))
    assert upload_kept_still(a, LocalFile(10, 1_000, 99), 10)  # a new inode alone is not a change
    assert not upload_kept_still(a, LocalFile(10, 1_000, 7), 9)
    cutoff = settle_cutoff(5_000_000_000, 1.0)
    assert cutoff == 4_000_000_000
    assert unsettled([("old", 3_999_999_999), ("edge", 4_000_000_000), ("new", 4_000_000_001)], cutoff) == {"new"}


def test_settle_is_measured_up_to_the_scan_and_the_scanned_state_is_what_is_sent() -> None:
    # The cutoff counts from the clock read before the scan: a file last written 0.5 s before the
    # scan is still settling, however long the listing and hashing after the scan took.
    scanned = 10_000_000_000
    assert unsettled([("f", scanned - 500_000_000)], settle_cutoff(scanned, 1.0)) == {"f"}
    assert unsettled([("f", scanned - 1_000_000_000)], settle_cutoff(scanned, 1.0)) == set()
    # What is read must be the state that passed the check: an append or a rewrite since the scan
    # is a state nobody saw at rest.
    seen = LocalFile(4096, scanned - 3_000_000_000, 7, scanned - 3_000_000_000)
    assert still_settled(seen, LocalFile(4096, scanned - 3_000_000_000, 7, scanned - 3_000_000_000))
    assert not still_settled(seen, LocalFile(8192, scanned + 5_000_000, 7, scanned + 5_000_000))  # appended
    assert not still_settled(seen, LocalFile(4096, scanned + 5_000_000, 7, scanned + 5_000_000))  # rewritten
    assert not still_settled(seen, LocalFile(4096, scanned - 3_000_000_000, 8))  # replaced by a rename
    assert still_settled(None, LocalFile(1, 2, 3))  # no settle check: any state may be sent


def _reg(interval: float | None, last_sync: float, sync_on_error: bool = False) -> UploadReg:
    target = Target(parse_s3_url("s3://b/k"), None, Path("/tmp/x"))
    return UploadReg((), target, interval, True, sync_on_error, Excluder.of(None), last_sync=last_sync)


def test_background_uploads_run_when_due_or_requested() -> None:
    due, later, never = _reg(10, 0.0), _reg(10, 95.0), _reg(None, 0.0)
    assert due_uploads([due, later, never], 100.0, requested=False) == [due]
    assert due_uploads([due, later, never], 100.0, requested=True) == [due, later, never]
    assert next_wake([later], 100.0) == 1.0  # looks again at least every second
    assert next_wake([_reg(10, 90.3)], 100.0) == pytest.approx(0.3)
    assert next_wake([due], 100.0) == 0.05  # overdue: a short, bounded pause
    assert next_wake([], 100.0) == 1.0


def test_exit_rules() -> None:
    plain, on_error = _reg(None, 0.0), _reg(None, 0.0, sync_on_error=True)
    assert uploads_on_exit([plain, on_error], None, None) == ([plain, on_error], True)
    assert uploads_on_exit([plain, on_error], SystemExit, SystemExit(0)) == ([plain, on_error], True)
    assert uploads_on_exit([plain, on_error], ValueError, ValueError()) == ([on_error], False)
    assert uploads_on_exit([plain, on_error], SystemExit, SystemExit(2)) == ([on_error], False)
    assert uploads_on_exit([plain, on_error], KeyboardInterrupt, KeyboardInterrupt()) == ([], False)


def test_a_complete_sent_again_counts_as_done_only_for_the_bytes_sent() -> None:
    assert completed_before("NoSuchUpload", "abc", 10, xxh3="abc", size=10)
    assert not completed_before("NoSuchUpload", "other", 10, xxh3="abc", size=10)  # another writer's object
    assert not completed_before("NoSuchUpload", "abc", 11, xxh3="abc", size=10)
    assert not completed_before("NoSuchUpload", None, None, xxh3="abc", size=10)  # nothing there
    assert not completed_before("InternalError", "abc", 10, xxh3="abc", size=10)  # not a lost answer
    assert not completed_before("NoSuchUpload", "", 10, xxh3="", size=10)
