"""What to copy and what to delete: a remote listing x a local tree x the recorded state. Pure.

Nothing here touches the disk or the network. The engine lists, scans and loads records,
calls `plan_download` / `plan_upload`, carries out the content `checks` the plan asks for
(hashing, at most one metadata request per candidate), and calls the planner again with the
answers as ``evidence``. The second plan is final; a dry run shows exactly that plan.

The rule (documented in docs/change-detection.md):

* Download, file with a record: local size or ``mtime_ns`` differ from the record -> content
  is compared with the recorded fingerprint (same -> keep, else "changed locally", restored);
  else the ETag differs from the record -> "changed remotely"; else nothing to do.
* Download, file without a record: sizes differ -> "changed"; same size -> content check
  (MD5 against a single-part ETag, else pos3's xxh3 in the object's metadata).
* Upload, file with a record: the remote ETag differs from the record -> "changed remotely"
  (local wins); else (size, ``mtime_ns``, inode) equal -> nothing; size differs -> "changed
  locally"; same size -> fingerprint compared with the record (a ``touch`` uploads nothing).
* Upload, file without a record: like download without a record.
* No file on the other side -> "new", or "missing" when a record says it was in sync.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ._exclude import Excluder

__all__ = [
    "Check",
    "CheckKind",
    "Copy",
    "Delete",
    "LocalFile",
    "LocalTree",
    "Plan",
    "PlannedAction",
    "Reason",
    "Record",
    "RemoteFile",
    "RemoteTree",
    "TransferPlan",
    "ancestors",
    "plan_download",
    "plan_upload",
]


NO_EXCLUDE = Excluder()


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


@dataclass(frozen=True, slots=True)
class LocalFile:
    """One local file as `os.stat` saw it."""

    size: int
    mtime_ns: int
    inode: int


@dataclass(frozen=True, slots=True)
class Record:
    """What the state store remembers about a file that was last seen in sync."""

    key: str
    etag: str
    size: int
    local_size: int
    mtime_ns: int
    inode: int
    xxh3: str
    last_modified: str = ""
    checksum: str = ""

    def same_stat(self, local: LocalFile) -> bool:
        """Whether ``local`` is, by (size, mtime_ns, inode), the file this record describes."""
        return (self.local_size, self.mtime_ns, self.inode) == (local.size, local.mtime_ns, local.inode)


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
        refresh: Files whose record only needs the new (mtime_ns, inode), content unchanged.
    """

    clear: tuple[Delete, ...] = ()
    copies: tuple[Copy, ...] = ()
    deletes: tuple[Delete, ...] = ()
    checks: tuple[Check, ...] = ()
    adopt: tuple[str, ...] = ()
    refresh: tuple[str, ...] = ()

    @property
    def final(self) -> bool:
        """Whether the plan needs no more evidence."""
        return not self.checks


def ancestors(rel: str) -> Iterable[str]:
    """The parent folders of ``rel``, nearest first (``a/b/c`` -> ``a/b``, ``a``)."""
    parent = rel.rpartition("/")[0]
    while parent:
        yield parent
        parent = parent.rpartition("/")[0]


def _depth_first(rels: Iterable[str]) -> list[str]:
    return sorted(rels, key=lambda r: (-r.count("/"), r))


def _protected_dirs(all_rels: Iterable[str], exclude: Excluder) -> set[str]:
    """Folders holding something excluded: deleting them would delete what the user kept."""
    protected: set[str] = set()
    if not exclude:
        return protected
    for rel in all_rels:
        if exclude.excluded(rel):
            protected.update(ancestors(rel))
    return protected


def _decide_without_record(
    rel: str, source_size: int, target_size: int, evidence: Mapping[str, bool]
) -> Reason | CheckKind | None:
    if source_size != target_size:
        return Reason.CHANGED
    same = evidence.get(rel)
    if same is None:
        return CheckKind.CONTENT_VS_REMOTE
    return None if same else Reason.CHANGED


def plan_download(
    prefix: str,
    remote: RemoteTree,
    local: LocalTree,
    records: Mapping[str, Record],
    *,
    delete: bool,
    exclude: Excluder = NO_EXCLUDE,
    evidence: Mapping[str, bool] | None = None,
) -> Plan:
    """Plan a download of ``remote`` onto ``local``.

    Args:
        prefix: Key prefix the relative paths hang from (``""``, ``"dir/"`` or an exact key).
        remote: The listing.
        local: The local tree.
        records: Records by relative path (any whose key differs from the object's is ignored).
        delete: Whether to delete local files and folders absent remotely.
        exclude: Patterns excluded on both sides.
        evidence: Answers to earlier `Check`s: relative path -> content is the same.

    Returns:
        The plan; `Plan.final` tells whether checks remain.
    """
    evidence = evidence or {}
    rfiles = {r: f for r, f in remote.files.items() if not exclude.excluded(r)}
    # A marker at (or below) a file's path cannot be a folder here: the file wins.
    markers = {
        m
        for m in remote.markers
        if not exclude.excluded(m) and m not in rfiles and not any(a in rfiles for a in ancestors(m))
    }
    rdirs = set(markers)
    for rel in list(rfiles) + list(markers):
        rdirs.update(ancestors(rel))
    lfiles = {r: f for r, f in local.files.items() if not exclude.excluded(r)}
    ldirs = {d for d in local.dirs if not exclude.excluded(d)}

    clear: list[Delete] = []
    cleared: set[str] = set()
    protected = _protected_dirs(list(local.files) + list(local.dirs), exclude)
    for d in sorted(rdirs):
        if d in lfiles:
            clear.append(Delete(d, prefix + d))
            cleared.add(d)
    for rel in sorted(rfiles):
        # A folder holding excluded files is never cleared: that copy fails instead, by name.
        if rel in ldirs and rel not in protected:
            clear.append(Delete(rel, prefix + rel, is_dir=True))
            cleared.add(rel)

    copies: list[Copy] = []
    checks: list[Check] = []
    adopt: list[str] = []
    refresh: list[str] = []
    for d in sorted(markers - ldirs):
        copies.append(Copy(d, prefix + d + "/", 0, Reason.NEW, is_dir=True))
    for rel, obj in sorted(rfiles.items()):
        rec = records.get(rel)
        if rec is not None and rec.key != obj.key:
            rec = None
        lf = None if rel in cleared else lfiles.get(rel)
        decision: Reason | CheckKind | None
        if lf is None:
            decision = Reason.MISSING if rec is not None else Reason.NEW
        elif rec is not None:
            if (lf.size, lf.mtime_ns) != (rec.local_size, rec.mtime_ns):
                if lf.size != rec.local_size:
                    decision = Reason.CHANGED_LOCAL
                elif rel in evidence:
                    decision = None if evidence[rel] else Reason.CHANGED_LOCAL
                else:
                    decision = CheckKind.LOCAL_VS_RECORD
            else:
                decision = None
            if decision is None and (obj.etag != rec.etag or obj.size != rec.size):
                decision = Reason.CHANGED_REMOTE  # a new size is a new version, whatever the ETag says
            elif decision is None and not rec.same_stat(lf):
                refresh.append(rel)
        else:
            decision = _decide_without_record(rel, obj.size, lf.size, evidence)
            if decision is None:
                adopt.append(rel)
        if isinstance(decision, Reason):
            copies.append(Copy(rel, obj.key, obj.size, decision))
        elif isinstance(decision, CheckKind):
            checks.append(Check(rel, decision))

    deletes: list[Delete] = []
    if delete:

        def gone_with_clear(rel: str) -> bool:
            return rel in cleared or any(a in cleared for a in ancestors(rel))

        for rel in sorted(lfiles):
            if rel not in rfiles and rel not in rdirs and not gone_with_clear(rel):
                deletes.append(Delete(rel, prefix + rel))
        for d in _depth_first(ldirs):
            if d not in rdirs and d not in rfiles and d not in protected and not gone_with_clear(d):
                deletes.append(Delete(d, prefix + d, is_dir=True))
    return Plan(tuple(clear), tuple(copies), tuple(deletes), tuple(checks), tuple(adopt), tuple(refresh))


def plan_upload(
    prefix: str,
    local: LocalTree,
    remote: RemoteTree,
    records: Mapping[str, Record],
    *,
    delete: bool,
    exclude: Excluder = NO_EXCLUDE,
    evidence: Mapping[str, bool] | None = None,
) -> Plan:
    """Plan an upload of ``local`` onto ``remote``.

    Args:
        prefix: Key prefix the relative paths hang from (``""``, ``"dir/"`` or an exact key).
        local: The local tree.
        remote: The listing.
        records: Records by relative path (any whose key differs is ignored).
        delete: Whether to delete objects absent locally.
        exclude: Patterns excluded on both sides.
        evidence: Answers to earlier `Check`s: relative path -> content is the same.

    Returns:
        The plan; `Plan.final` tells whether checks remain.
    """
    evidence = evidence or {}
    lfiles = {r: f for r, f in local.files.items() if not exclude.excluded(r)}
    ldirs = {d for d in local.dirs if not exclude.excluded(d)}
    rfiles = {r: f for r, f in remote.files.items() if not exclude.excluded(r)}
    markers = {m for m in remote.markers if not exclude.excluded(m)}

    copies: list[Copy] = []
    checks: list[Check] = []
    adopt: list[str] = []
    refresh: list[str] = []
    # An empty local folder becomes a marker, unless S3 keeps objects below it that the
    # exclude patterns hide (they stay, so the folder exists in S3 already).
    nonempty: set[str] = set()
    for rel in [*lfiles, *ldirs]:
        nonempty.update(ancestors(rel))
    for rel in remote.files:
        if exclude.excluded(rel):
            nonempty.update(ancestors(rel))
    for d in sorted(ldirs - nonempty - markers):
        copies.append(Copy(d, prefix + d + "/", 0, Reason.NEW, is_dir=True))
    for rel, lf in sorted(lfiles.items()):
        key = prefix + rel
        obj = rfiles.get(rel)
        rec = records.get(rel)
        if rec is not None and rec.key != key:
            rec = None
        decision: Reason | CheckKind | None
        if obj is None:
            decision = Reason.MISSING if rec is not None else Reason.NEW
        elif rec is not None:
            if obj.etag != rec.etag:
                decision = Reason.CHANGED_REMOTE
            elif rec.same_stat(lf):
                decision = None
            elif lf.size != rec.local_size:
                decision = Reason.CHANGED_LOCAL
            elif rel in evidence:
                decision = None if evidence[rel] else Reason.CHANGED_LOCAL
                if decision is None:
                    refresh.append(rel)
            else:
                decision = CheckKind.LOCAL_VS_RECORD
        else:
            decision = _decide_without_record(rel, lf.size, obj.size, evidence)
            if decision is None:
                adopt.append(rel)
        if isinstance(decision, Reason):
            copies.append(Copy(rel, key, lf.size, decision))
        elif isinstance(decision, CheckKind):
            checks.append(Check(rel, decision))

    deletes: list[Delete] = []
    if delete:
        for rel, obj in sorted(rfiles.items()):
            if rel not in lfiles:
                deletes.append(Delete(rel, obj.key))
        for m in sorted(markers):
            if m not in ldirs:
                deletes.append(Delete(m, prefix + m + "/", is_dir=True))
    return Plan((), tuple(copies), tuple(deletes), tuple(checks), tuple(adopt), tuple(refresh))


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """One line of a `TransferPlan`.

    Attributes:
        action: ``"copy"`` or ``"delete"``.
        src: Where bytes come from (``""`` for a delete).
        dst: What is written or deleted: a local path or an ``s3://`` URL.
        reason: Why (``"new"``, ``"changed remotely"``, ``"changed locally"``, ``"missing"``,
            ``"changed"``, ``"absent from source"``, ``"replaced"``).
        size: Bytes to transfer (0 for deletes and folders).
    """

    action: str
    src: str
    dst: str
    reason: str
    size: int = 0


@dataclass(frozen=True)
class TransferPlan:
    """What a download or upload would do, with no side effects.

    Attributes:
        to_copy: ``(source, destination)`` pairs, local paths and ``s3://`` URLs as strings.
        to_delete: Local paths or ``s3://`` URLs that would be deleted.
        actions: Every step with its reason, in the order it would run.
    """

    to_copy: list[tuple[str, str]] = field(default_factory=list)
    to_delete: list[str] = field(default_factory=list)
    actions: tuple[PlannedAction, ...] = ()

    @property
    def total_bytes(self) -> int:
        """Bytes the copies would transfer."""
        return sum(a.size for a in self.actions if a.action == "copy")

    @classmethod
    def from_plans(
        cls,
        parts: Iterable[tuple[Plan, Callable[[str], str], Callable[[str], str]]],
    ) -> TransferPlan:
        """Combine plans, naming each side with ``(plan, source_name, target_name)``."""
        actions: list[PlannedAction] = []
        for plan, src_name, dst_name in parts:
            actions += [PlannedAction("delete", "", dst_name(d.rel), "replaced") for d in plan.clear]
            actions += [
                PlannedAction("copy", src_name(c.rel), dst_name(c.rel), str(c.reason), c.size)
                for c in plan.copies
            ]
            actions += [PlannedAction("delete", "", dst_name(d.rel), "absent from source") for d in plan.deletes]
        return cls(
            to_copy=[(a.src, a.dst) for a in actions if a.action == "copy"],
            to_delete=[a.dst for a in actions if a.action == "delete"],
            actions=tuple(actions),
        )
