"""The planner's values: files on each side, records, the reasons and the plan. Pure.

Split from `pos3._plan` (which re-exports every name) to keep each module under ~450 lines.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "RACY_MARGIN_NS",
    "Check",
    "CheckKind",
    "Copy",
    "Delete",
    "LocalFile",
    "LocalTree",
    "Plan",
    "Reason",
    "Record",
    "RemoteFile",
    "RemoteTree",
    "is_racy",
    "placed_mtime_ns",
]


class Reason(enum.StrEnum):
    """Why a file is copied."""

    NEW = "new"
    MISSING = "missing"
    CHANGED = "changed"
    CHANGED_REMOTE = "changed remotely"
    CHANGED_LOCAL = "changed locally"


class CheckKind(enum.StrEnum):
    """Which content comparison a plan needs before it is final."""

    LOCAL_VS_RECORD = "local fingerprint vs record"
    CONTENT_VS_REMOTE = "local content vs remote object"


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One object in a listing."""

    key: str
    size: int
    etag: str
    last_modified: str = ""


# A file whose mtime is less than this before the moment its record was taken may be
# rewritten later with the very same mtime (1-second and 2-second timestamps, a clock a little
# off): git's "racy clean". Such a record proves nothing by its stat; the file is hashed.
RACY_MARGIN_NS = 3_000_000_000


def is_racy(mtime_ns: int, taken_ns: int) -> bool:
    """Whether a stat taken at ``taken_ns`` cannot prove that later writes change the mtime.

    A write after ``taken_ns`` gets an mtime later than ``taken_ns`` minus the timestamp
    granularity (2 s at most, on FAT); it differs from ``mtime_ns`` for sure only when
    ``mtime_ns`` is at least `RACY_MARGIN_NS` older than ``taken_ns``.
    """
    return mtime_ns > taken_ns - RACY_MARGIN_NS


def placed_mtime_ns(last_modified: str, now_ns: int) -> int | None:
    """The mtime a downloaded file is given: its object's Last-Modified (ISO 8601), if past.

    As ``aws s3 sync`` and rclone do, so the file shows the object's age. It also makes the
    record taken at download time trustworthy (`is_racy` is false for an object older than the
    margin), so the next sync proves the file by its stat instead of reading it again. A later
    write gives the file an mtime near that write, which differs. ``None`` (keep the time of
    writing) when the time is unknown, unreadable or in the future (a clock ahead of ours).
    """
    if not last_modified:
        return None
    try:
        stamp = datetime.datetime.fromisoformat(last_modified)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    ns = int(stamp.timestamp() * 1_000_000) * 1000
    return ns if 0 < ns <= now_ns else None


@dataclass(frozen=True, slots=True)
class LocalFile:
    """One local file as `os.stat` saw it (``ctime_ns`` 0 where unknown)."""

    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int = 0


class Record(NamedTuple):
    """What the state store remembers about a file that was last seen in sync.

    A named tuple rather than a frozen dataclass: the store loads one per file of a tree
    (a million for a large one), and a tuple is built about six times faster, from the row.
    """

    key: str
    etag: str
    size: int
    local_size: int
    mtime_ns: int
    inode: int
    xxh3: str
    last_modified: str = ""
    checksum: str = ""
    ctime_ns: int = 0
    recorded_ns: int = 0  # when the local stat was taken (wall clock); 0: unknown, never trusted

    @classmethod
    def of(cls, key: str, etag: str, size: int, local: LocalFile, xxh3: str, recorded_ns: int,
           last_modified: str = "", checksum: str = "") -> Record:
        """The record of ``local`` (stat taken no later than ``recorded_ns``) in sync with an object."""
        return cls(key, etag, size, local.size, local.mtime_ns, local.inode, xxh3, last_modified, checksum,
                   local.ctime_ns, recorded_ns)

    def same_stat(self, local: LocalFile) -> bool:
        """Whether ``local`` is, by (size, mtime_ns, inode, ctime_ns), the file this record describes."""
        return (self.local_size == local.size and self.mtime_ns == local.mtime_ns and self.inode == local.inode
                and self.ctime_ns == local.ctime_ns)

    @property
    def racy(self) -> bool:
        """Whether the file's mtime was too recent when this record was taken to trust its stat."""
        return is_racy(self.mtime_ns, self.recorded_ns)

    def proves(self, local: LocalFile) -> bool:
        """Whether ``local`` is, without reading it, the content this record describes."""
        # same_stat(local) and not racy, spelled out: the planner asks this once per file.
        return (self.local_size == local.size and self.mtime_ns == local.mtime_ns and self.inode == local.inode
                and self.ctime_ns == local.ctime_ns and self.mtime_ns <= self.recorded_ns - RACY_MARGIN_NS)


@dataclass(frozen=True)
class RemoteTree:
    """A listing below a prefix, by relative path.

    Attributes:
        files: Objects that are files.
        markers: Relative paths of directory markers (keys ending in ``/``), ``""`` excluded.
    """

    files: Mapping[str, RemoteFile] = field(default_factory=dict)
    markers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LocalTree:
    """A local folder, by relative path (``""`` is a single file target).

    Attributes:
        files: Regular files.
        dirs: Every folder below the root (not the root itself).
    """

    files: Mapping[str, LocalFile] = field(default_factory=dict)
    dirs: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Copy:
    """Copy one file (or create one folder / marker) to the target side."""

    rel: str
    key: str
    size: int
    reason: Reason
    is_dir: bool = False


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete one file or (empty) folder on the target side."""

    rel: str
    key: str
    is_dir: bool = False


@dataclass(frozen=True, slots=True)
class Check:
    """A content comparison the engine must make before the plan is final."""

    rel: str
    kind: CheckKind


@dataclass(frozen=True)
class Plan:
    """The decisions for one folder, in the order they must run.

    Attributes:
        clear: Deletes that make way for copies (a folder where a file goes, or the reverse);
            they run before ``copies``.
        copies: Files to transfer and folders to create.
        deletes: Files and folders absent from the source; they run after every copy succeeded.
        checks: Comparisons still needed; empty in a final plan.
        adopt: Files found identical without a record; the engine records them.
        refresh: Files whose record only needs a new stat (and time), content unchanged.
        kept: Local work a ``keep_local`` download leaves alone: files never in sync, or
            changed since their record, while the object did not change (the upload sends them).
        conflicts: Files a ``keep_local`` download cannot decide without losing a version:
            changed locally and in S3 since their record, or different on both sides with no
            record at all. The engine refuses the whole download and names them.
    """

    clear: tuple[Delete, ...] = ()
    copies: tuple[Copy, ...] = ()
    deletes: tuple[Delete, ...] = ()
    checks: tuple[Check, ...] = ()
    adopt: tuple[str, ...] = ()
    refresh: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()

    @property
    def final(self) -> bool:
        """Whether the plan needs no more evidence."""
        return not self.checks
