"""The pure decisions of a transfer (pos3._policy, pos3._registry, pos3._background): no server needed."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos3 import IntegrityError
from pos3._background import due_uploads, next_wake
from pos3._exclude import Excluder
from pos3._plan import LocalFile
from pos3._policy import (
    MAX_DOWNLOAD_PART,
    body_in_memory,
    check_body,
    download_part_size,
    is_changed_version,
    is_multipart,
    is_ranged,
    journal_fits,
    may_retry_body,
    part_count,
    part_length,
    part_span,
    parts_todo,
    retry_delay,
    same_state,
    settle_cutoff,
    unsettled,
    upload_kept_still,
    upload_part_size,
)
from pos3._registry import UploadReg, uploads_on_exit
from pos3._transfer.context import Target
from pos3._urls import parse_s3_url

MiB = 1 << 20


def test_download_part_is_a_quarter_of_the_object_within_bounds() -> None:
    assert download_part_size(100 * MiB, 8 * MiB) == 25 * MiB
    assert download_part_size(10 * MiB, 8 * MiB) == 8 * MiB  # never below part_size
    assert download_part_size(10_000 * MiB, 8 * MiB) == MAX_DOWNLOAD_PART  # never above 64 MiB
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


def test_a_broken_body_is_retried_a_bounded_number_of_times_after_it_started() -> None:
    assert may_retry_body(1, 3) and may_retry_body(3, 3)
    assert not may_retry_body(4, 3)
    assert not may_retry_body(1, 3, started=False)
    delays = [retry_delay(a) for a in range(1, 10)]
    assert delays == sorted(delays) and delays[0] == pytest.approx(0.2) and max(delays) == 2.0


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
    with pytest.raises(IntegrityError, match="MD5 ETag"):
        check_body("s3://b/k", **{**ok, "etag": "other"}, expected_xxh3=None)  # type: ignore[arg-type]


def test_settled_files_and_unchanged_uploads() -> None:
    a = LocalFile(10, 1_000, 7)
    assert same_state(a, LocalFile(10, 1_000, 7))
    assert not same_state(a, LocalFile(10, 1_001, 7)) and not same_state(a, LocalFile(10, 1_000, 8))
    assert upload_kept_still(a, LocalFile(10, 1_000, 99), 10)  # a new inode alone is not a change
    assert not upload_kept_still(a, LocalFile(10, 1_000, 7), 9)
    cutoff = settle_cutoff(5_000_000_000, 1.0)
    assert cutoff == 4_000_000_000
    assert unsettled([("old", 3_999_999_999), ("edge", 4_000_000_000), ("new", 4_000_000_001)], cutoff) == {"new"}


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
