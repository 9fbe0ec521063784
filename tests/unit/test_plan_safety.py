"""The planner's safety rules: racy-clean records, the full stat, and sync()'s keep_local (issue 12)."""

from __future__ import annotations

import pytest

from pos3._plan import (
    RACY_MARGIN_NS,
    Check,
    CheckKind,
    Copy,
    Delete,
    LocalFile,
    LocalTree,
    Plan,
    Reason,
    Record,
    RemoteFile,
    RemoteTree,
    ancestors,
    is_racy,
    placed_mtime_ns,
    plan_download,
    plan_upload,
)

SECOND = 1_000_000_000
T = 1_796_065_099 * SECOND  # a whole second, as on a file system with 1-second timestamps


def obj(key: str, etag: str, size: int = 4) -> RemoteFile:
    return RemoteFile(key, size, etag)


def record(key: str, etag: str, local: LocalFile, taken: int, xxh3: str = "x") -> Record:
    return Record.of(key, etag, local.size, local, xxh3, taken)


def test_racy_means_mtime_not_safely_older_than_the_record() -> None:
    assert not is_racy(T, T + RACY_MARGIN_NS)
    assert is_racy(T, T + RACY_MARGIN_NS - 1)
    assert is_racy(T, T)
    assert is_racy(T + 5 * SECOND, T)  # an mtime in the future proves nothing either
    assert is_racy(T, 0)  # a record without its time is never trusted
    assert RACY_MARGIN_NS >= 2 * SECOND  # covers 2-second (FAT) timestamps


def test_a_downloaded_file_takes_its_objects_time_when_that_is_past() -> None:
    stamp = 1_796_110_699 * SECOND  # 2026-12-01T07:38:19Z
    later = stamp + 3600 * SECOND
    assert placed_mtime_ns("2026-12-01T07:38:19+00:00", later) == stamp
    assert placed_mtime_ns("2026-12-01T08:38:19+01:00", later) == stamp
    assert placed_mtime_ns("2026-12-01T07:38:19.250000+00:00", later) == stamp + 250_000_000
    assert placed_mtime_ns("2026-12-01T07:38:19", later) == stamp  # no zone: UTC, as S3 means it
    assert placed_mtime_ns("2026-12-01T07:38:19+00:00", stamp - SECOND) is None  # ahead of our clock: write time
    assert placed_mtime_ns("", later) is None and placed_mtime_ns("yesterday", later) is None
    # An object older than the margin leaves a record that proves the file by its stat next time;
    # one written just before the download does not.
    assert not is_racy(stamp, stamp + RACY_MARGIN_NS)
    assert is_racy(stamp, stamp + SECOND)


def test_record_of_keeps_the_full_stat_and_its_time() -> None:
    lf = LocalFile(4, T, 7, T + 1)
    rec = record("k", "e", lf, T + 9 * SECOND)
    assert (rec.local_size, rec.mtime_ns, rec.inode, rec.ctime_ns, rec.recorded_ns) == (4, T, 7, T + 1, T + 9 * SECOND)
    assert rec.proves(lf) and not rec.racy


@pytest.mark.parametrize("direction", ["download", "upload"])
def test_a_racy_record_is_checked_by_content_not_trusted(direction: str) -> None:
    lf = LocalFile(4, T, 7, T)
    rec = record("d/f", "e1", lf, T + SECOND // 10)  # taken in the same second as the mtime
    remote = RemoteTree({"f": obj("d/f", "e1")})
    local = LocalTree({"f": lf})

    def plan(evidence: dict[str, bool] | None = None) -> Plan:
        if direction == "download":
            return plan_download("d/", remote, local, {"f": rec}, delete=True, evidence=evidence)
        return plan_upload("d/", local, remote, {"f": rec}, delete=True, evidence=evidence)

    first = plan()
    assert first.checks == (Check("f", CheckKind.LOCAL_VS_RECORD),)
    rewritten = plan({"f": False})  # same stat, other bytes: a rewrite within the second
    assert rewritten.copies == (Copy("f", "d/f", 4, Reason.CHANGED_LOCAL),)
    same = plan({"f": True})
    assert same.copies == () and same.refresh == ("f",)


@pytest.mark.parametrize("direction", ["download", "upload"])
def test_a_settled_record_with_the_same_stat_reads_nothing(direction: str) -> None:
    lf = LocalFile(4, T, 7, T)
    rec = record("d/f", "e1", lf, T + 10 * SECOND)
    remote, local = RemoteTree({"f": obj("d/f", "e1")}), LocalTree({"f": lf})
    if direction == "download":
        plan = plan_download("d/", remote, local, {"f": rec}, delete=True)
    else:
        plan = plan_upload("d/", local, remote, {"f": rec}, delete=True)
    assert (plan.checks, plan.copies, plan.refresh) == ((), (), ())


@pytest.mark.parametrize("changed", [
    LocalFile(4, T, 8, T),  # replaced (cp -p, rsync -t, tar): new inode, same size and mtime
    LocalFile(4, T, 7, T + 1),  # rewritten in place, mtime put back: ctime moved
])
def test_download_checks_a_file_replaced_with_the_same_size_and_mtime(changed: LocalFile) -> None:
    rec = record("d/f", "e1", LocalFile(4, T, 7, T), T + 10 * SECOND)
    plan = plan_download("d/", RemoteTree({"f": obj("d/f", "e1")}), LocalTree({"f": changed}), {"f": rec},
                         delete=True)
    assert plan.checks == (Check("f", CheckKind.LOCAL_VS_RECORD),)
    again = plan_download("d/", RemoteTree({"f": obj("d/f", "e1")}), LocalTree({"f": changed}), {"f": rec},
                          delete=True, evidence={"f": False})
    assert again.copies == (Copy("f", "d/f", 4, Reason.CHANGED_LOCAL),)


# ---------------------------------------------------------------------------- keep_local (sync)

SETTLED = T + 10 * SECOND
SAME = LocalFile(4, T, 7, T)
EDITED = LocalFile(4, T + 20 * SECOND, 7, T + 20 * SECOND)  # same size, newer mtime: hashed
LONGER = LocalFile(9, T + 20 * SECOND, 7, T + 20 * SECOND)


def keep(remote: dict[str, RemoteFile], local: dict[str, LocalFile], records: dict[str, Record],
         evidence: dict[str, bool] | None = None, delete: bool = True) -> Plan:
    dirs = frozenset(a for rel in local for a in ancestors(rel))
    return plan_download("d/", RemoteTree(remote), LocalTree(local, dirs), records, delete=delete,
                         evidence=evidence, keep_local=True)


# (remote etag or None, local stat or None, record etag or None, content same as record) -> outcome
@pytest.mark.parametrize(("remote", "local", "rec", "same", "outcome"), [
    ("e1", SAME, "e1", None, "nothing"),  # in sync
    ("e2", SAME, "e1", None, "pull"),  # changed in S3 only
    ("e1", LONGER, "e1", None, "kept"),  # changed locally only
    ("e1", EDITED, "e1", False, "kept"),
    ("e1", EDITED, "e1", True, "refresh"),  # touched only
    ("e2", LONGER, "e1", None, "conflict"),  # changed on both sides
    ("e2", EDITED, "e1", False, "conflict"),
    ("e2", EDITED, "e1", True, "pull"),
    (None, SAME, "e1", None, "delete"),  # in sync, then deleted in S3
    (None, LONGER, "e1", None, "kept"),  # edited locally, deleted in S3: the edit is kept
    (None, SAME, None, None, "kept"),  # never in sync (a job's unsaved output)
    ("e1", None, "e1", None, "pull"),  # deleted locally: restored, as a resume expects
    ("e1", LONGER, None, None, "conflict"),  # never in sync, different from S3
    ("e1", SAME, None, True, "adopt"),  # never in sync, identical to S3
])
def test_keep_local_table(remote: str | None, local: LocalFile | None, rec: str | None, same: bool | None,
                          outcome: str) -> None:
    remote_files = {"f": obj("d/f", remote)} if remote else {}
    local_files = {"f": local} if local else {}
    records = {"f": record("d/f", rec, SAME, SETTLED)} if rec else {}
    evidence = {"f": same} if same is not None else None
    plan = keep(remote_files, local_files, records, evidence)
    got = {
        "pull": any(c.rel == "f" for c in plan.copies),
        "kept": plan.kept == ("f",),
        "conflict": plan.conflicts == ("f",),
        "delete": plan.deletes == (Delete("f", "d/f"),),
        "refresh": plan.refresh == ("f",),
        "adopt": plan.adopt == ("f",),
    }
    assert plan.checks == ()
    if outcome == "nothing":
        assert not any(got.values()) and plan.deletes == ()
    else:
        assert [k for k, v in got.items() if v] == [outcome]


def test_keep_local_asks_for_a_hash_before_deleting() -> None:
    plan = keep({}, {"f": EDITED}, {"f": record("d/f", "e1", SAME, SETTLED)})
    assert plan.checks == (Check("f", CheckKind.LOCAL_VS_RECORD),)
    assert plan.deletes == ()
    # Without delete_local nothing needs a check: every local-only file stays.
    assert keep({}, {"f": EDITED}, {"f": record("d/f", "e1", SAME, SETTLED)}, delete=False).checks == ()


def test_keep_local_never_clears_a_folder_holding_work() -> None:
    # S3 now has a file "x" where the job made a folder "x/" with unsaved work: a conflict.
    plan = keep({"x": obj("d/x", "e1")}, {"x/new.pt": SAME}, {})
    assert plan.conflicts == ("x/new.pt",) and plan.clear == () and plan.copies == ()
    # A folder holding only files in sync is cleared as in a download.
    rec = record("d/x/old", "e0", SAME, SETTLED)
    plan = keep({"x": obj("d/x", "e1")}, {"x/old": SAME}, {"x/old": rec})
    assert plan.conflicts == () and plan.clear == (Delete("x", "d/x", is_dir=True),)


def test_keep_local_keeps_the_folders_of_kept_files() -> None:
    plan = keep({}, {"sub/new.pt": SAME}, {})
    assert plan.kept == ("sub/new.pt",) and plan.deletes == ()
