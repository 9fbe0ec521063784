"""What to copy and what to delete: a remote listing x a local tree x the recorded state. Pure.

Nothing here touches the disk or the network. The engine lists, scans and loads records,
calls `plan_download` / `plan_upload`, carries out the content `checks` the plan asks for
(hashing, at most one metadata request per candidate), and calls the planner again with the
answers as ``evidence``. The second plan is final; a dry run shows exactly that plan.

The rule (documented in docs/change-detection.md):

* A record proves a file unchanged without reading it only when (size, ``mtime_ns``, inode,
  ``ctime_ns``) are those recorded and the mtime was safely older (`RACY_MARGIN_NS`) than the
  moment the record was taken ("racy clean", as in git); else the file is hashed.
* Download, file with a record: the record does not prove the file -> content is compared with
  the recorded fingerprint (same -> keep, else "changed locally", restored); else the ETag
  differs from the record -> "changed remotely"; else nothing to do.
* ``keep_local`` (the download of ``sync()``): local work is kept instead of restored or
  deleted, a file changed on both sides is a conflict (see `plan_download`).
* Download, file without a record: sizes differ -> "changed"; same size -> content check
  (MD5 against a single-part ETag, else pos3's xxh3 in the object's metadata).
* Upload, file with a record: the remote ETag differs from the record -> "changed remotely"
  (local wins); else the record proves the file -> nothing; size differs -> "changed
  locally"; same size -> fingerprint compared with the record (a ``touch`` uploads nothing).
* Upload, file without a record: like download without a record.
* No file on the other side -> "new", or "missing" when a record says it was in sync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain

from ._exclude import Excluder
from ._plan_types import (
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
    is_racy,
    placed_mtime_ns,
)

__all__ = [
    "RACY_MARGIN_NS",
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
    "is_racy",
    "placed_mtime_ns",
    "plan_download",
    "plan_upload",
]


NO_EXCLUDE = Excluder()


def ancestors(rel: str) -> Iterable[str]:
    """The parent folders of ``rel``, nearest first (``a/b/c`` -> ``a/b``, ``a``)."""
    parent = rel.rpartition("/")[0]
    while parent:
        yield parent
        parent = parent.rpartition("/")[0]


def _add_ancestors(rels: Iterable[str], into: set[str]) -> None:
    """Add the parent folders of every path in ``rels`` to ``into``.

    ``into`` must hold only complete chains (with each folder, its parents): a folder found
    there ends the walk, so a million files in a thousand folders cost one lookup each.
    """
    for rel in rels:
        parent = rel.rpartition("/")[0]
        while parent and parent not in into:
            into.add(parent)
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
    keep_local: bool = False,
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
        keep_local: The download of ``sync()``: local work (a file never in sync, or changed
            since its record) is never overwritten or deleted but listed in ``kept``; only files
            in sync by their record follow S3 (pulled when the object changed, deleted when it
            is gone); a file changed on both sides is a conflict (see `Plan`).

    Returns:
        The plan; `Plan.final` tells whether checks remain.
    """
    evidence = evidence or {}
    # Without patterns the trees are used as they are: a million calls saved on each side.
    rfiles = {r: f for r, f in remote.files.items() if not exclude.excluded(r)} if exclude else remote.files
    # A marker at (or below) a file's path cannot be a folder here: the file wins.
    markers = {
        m
        for m in remote.markers
        if not exclude.excluded(m) and m not in rfiles and not any(a in rfiles for a in ancestors(m))
    }
    parents: set[str] = set()
    _add_ancestors(rfiles, parents)
    _add_ancestors(markers, parents)
    rdirs = markers | parents
    lfiles = {r: f for r, f in local.files.items() if not exclude.excluded(r)} if exclude else local.files
    ldirs = {d for d in local.dirs if not exclude.excluded(d)} if exclude else set(local.dirs)

    copies: list[Copy] = []
    checks: list[Check] = []
    adopt: list[str] = []
    refresh: list[str] = []
    kept: list[str] = []
    conflicts: list[str] = []

    def record_of(rel: str, key: str) -> Record | None:
        rec = records.get(rel)
        return rec if rec is not None and rec.key == key else None

    def changed_locally(rel: str, lf: LocalFile, rec: Record) -> bool | None:
        """Whether the file differs from its record; ``None`` (a check is asked) when unknown."""
        if lf.size != rec.local_size:
            return True
        if rec.proves(lf):
            return False
        if rel in evidence:
            return not evidence[rel]
        checks.append(Check(rel, CheckKind.LOCAL_VS_RECORD))
        return None

    work_cache: dict[str, bool | None] = {}

    def local_work(rel: str) -> bool | None:
        """For a local file S3 has no file for: whether it is work to keep (``None``: unknown)."""
        if rel not in work_cache:
            rec = record_of(rel, prefix + rel)
            # A file never in sync is work; else it is work when it changed since its record.
            work_cache[rel] = True if rec is None else changed_locally(rel, lfiles[rel], rec)
        return work_cache[rel]

    clear: list[Delete] = []
    cleared: set[str] = set()
    blocked: set[str] = set()  # keep_local: local work stands where S3 has the other kind
    protected = _protected_dirs(chain(local.files, local.dirs), exclude)
    for d in sorted(rdirs):
        if d in lfiles:
            if keep_local and local_work(d) is not False:
                blocked.add(d)
                continue
            clear.append(Delete(d, prefix + d))
            cleared.add(d)
    for rel in sorted([d for d in ldirs if d in rfiles]):
        # A folder holding excluded files is never cleared: that copy fails instead, by name.
        if rel not in protected:
            if keep_local and any(local_work(f) is not False for f in lfiles if f.startswith(rel + "/")):
                blocked.add(rel)
                continue
            clear.append(Delete(rel, prefix + rel, is_dir=True))
            cleared.add(rel)
    for b in blocked:
        if b in lfiles:
            conflicts.extend([b] if local_work(b) else [])
        else:
            conflicts.extend(f for f in lfiles if f.startswith(b + "/") and local_work(f))

    for d in sorted(markers - ldirs):
        copies.append(Copy(d, prefix + d + "/", 0, Reason.NEW, is_dir=True))
    # The files in S3, in any order: each adds at most one entry, to one of these lists, and
    # each list is put in path order afterwards, as if the files had been walked in order.
    n_copies, n_checks, n_adopt, n_refresh = len(copies), len(checks), len(adopt), len(refresh)
    for rel, obj in rfiles.items():
        rec = records.get(rel)
        lf = lfiles.get(rel)
        if (rec is not None and lf is not None and obj.etag == rec.etag and obj.size == rec.size
                and obj.key == rec.key and rec.proves(lf) and rel not in cleared):
            continue  # in sync, by its record, on both sides: by far the most common case
        if rec is not None and rec.key != obj.key:
            rec = None
        if rel in cleared:
            lf = None
        if lf is None:
            if rel not in blocked and not any(a in blocked for a in ancestors(rel)):
                copies.append(Copy(rel, obj.key, obj.size, Reason.MISSING if rec is not None else Reason.NEW))
            continue
        if rec is not None:
            local_changed = changed_locally(rel, lf, rec)
            if local_changed is None:
                continue
            remote_changed = obj.etag != rec.etag or obj.size != rec.size  # a new size is a new version
            if local_changed and not keep_local:
                copies.append(Copy(rel, obj.key, obj.size, Reason.CHANGED_LOCAL))
            elif local_changed:
                (conflicts if remote_changed else kept).append(rel)
            elif remote_changed:
                copies.append(Copy(rel, obj.key, obj.size, Reason.CHANGED_REMOTE))
            elif not rec.proves(lf):
                refresh.append(rel)
            continue
        decision = _decide_without_record(rel, obj.size, lf.size, evidence)
        if decision is None:
            adopt.append(rel)
        elif isinstance(decision, CheckKind):
            checks.append(Check(rel, decision))
        elif keep_local:
            conflicts.append(rel)  # never in sync, and not what S3 holds: neither may be lost
        else:
            copies.append(Copy(rel, obj.key, obj.size, decision))
    copies[n_copies:] = sorted(copies[n_copies:], key=_by_rel)
    checks[n_checks:] = sorted(checks[n_checks:], key=_by_rel)
    adopt[n_adopt:] = sorted(adopt[n_adopt:])
    refresh[n_refresh:] = sorted(refresh[n_refresh:])

    deletes: list[Delete] = []
    staying: set[str] = set()  # local files this plan keeps below folders S3 no longer has
    if delete:

        def gone_with_clear(rel: str) -> bool:
            return rel in cleared or any(a in cleared for a in ancestors(rel))

        for rel in sorted([r for r in lfiles if r not in rfiles]):
            if rel not in rdirs and not gone_with_clear(rel):
                work = local_work(rel) if keep_local else False
                if work is False:
                    deletes.append(Delete(rel, prefix + rel))
                else:
                    staying.add(rel)
                    if work:
                        kept.append(rel)
        held = {a for rel in staying for a in ancestors(rel)}
        for d in _depth_first(ldirs):
            if d not in rdirs and d not in rfiles and d not in protected and d not in held \
                    and not gone_with_clear(d):
                deletes.append(Delete(d, prefix + d, is_dir=True))
    return Plan(tuple(clear), tuple(copies), tuple(deletes), tuple(_unique(checks)), tuple(adopt), tuple(refresh),
                tuple(sorted(kept)), tuple(sorted(set(conflicts))))


def _by_rel(item: Copy | Check) -> str:
    return item.rel


def _unique(checks: Iterable[Check]) -> list[Check]:
    seen: set[str] = set()
    out: list[Check] = []
    for c in checks:
        if c.rel not in seen:
            seen.add(c.rel)
            out.append(c)
    return out


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
    lfiles = {r: f for r, f in local.files.items() if not exclude.excluded(r)} if exclude else local.files
    ldirs = {d for d in local.dirs if not exclude.excluded(d)} if exclude else set(local.dirs)
    rfiles = {r: f for r, f in remote.files.items() if not exclude.excluded(r)} if exclude else remote.files
    markers = {m for m in remote.markers if not exclude.excluded(m)}

    copies: list[Copy] = []
    checks: list[Check] = []
    adopt: list[str] = []
    refresh: list[str] = []
    # An empty local folder becomes a marker, unless S3 keeps objects below it that the
    # exclude patterns hide (they stay, so the folder exists in S3 already).
    nonempty: set[str] = set()
    _add_ancestors(chain(lfiles, ldirs), nonempty)
    if exclude:
        _add_ancestors((rel for rel in remote.files if exclude.excluded(rel)), nonempty)
    for d in sorted(ldirs - nonempty - markers):
        copies.append(Copy(d, prefix + d + "/", 0, Reason.NEW, is_dir=True))
    # As in plan_download: any order, at most one entry per file, each list sorted afterwards.
    n_copies, n_checks, n_adopt, n_refresh = len(copies), len(checks), len(adopt), len(refresh)
    for rel, lf in lfiles.items():
        key = prefix + rel
        obj = rfiles.get(rel)
        rec = records.get(rel)
        if obj is not None and rec is not None and obj.etag == rec.etag and rec.key == key and rec.proves(lf):
            continue  # in sync by its record, and S3 holds what it recorded: the common case
        if rec is not None and rec.key != key:
            rec = None
        decision: Reason | CheckKind | None
        if obj is None:
            decision = Reason.MISSING if rec is not None else Reason.NEW
        elif rec is not None:
            if obj.etag != rec.etag:
                decision = Reason.CHANGED_REMOTE
            elif rec.proves(lf):
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
    copies[n_copies:] = sorted(copies[n_copies:], key=_by_rel)
    checks[n_checks:] = sorted(checks[n_checks:], key=_by_rel)
    adopt[n_adopt:] = sorted(adopt[n_adopt:])
    refresh[n_refresh:] = sorted(refresh[n_refresh:])

    deletes: list[Delete] = []
    if delete:
        for rel in sorted([r for r in rfiles if r not in lfiles]):
            deletes.append(Delete(rel, rfiles[rel].key))
        for m in sorted(markers):
            if m not in ldirs:
                deletes.append(Delete(m, prefix + m + "/", is_dir=True))
    return Plan((), tuple(copies), tuple(deletes), tuple(checks), tuple(adopt), tuple(refresh))


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """One line of a `TransferPlan`.

    Attributes:
        action: ``"copy"`` or ``"delete"``; in a download planned with ``keep_local`` (as
            `sync` downloads) also ``"keep"`` (local work left for the upload) and
            ``"conflict"`` (changed on both sides: the download would stop, changing nothing).
        src: Where bytes come from (``""`` for a delete or a keep).
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
            actions += [PlannedAction("keep", "", dst_name(r), "local work, left for the upload") for r in plan.kept]
            actions += [PlannedAction("conflict", src_name(rel), dst_name(rel), "changed locally and in S3 since the "
                                      "last sync; the download would stop") for rel in plan.conflicts]
        return cls(
            to_copy=[(a.src, a.dst) for a in actions if a.action == "copy"],
            to_delete=[a.dst for a in actions if a.action == "delete"],
            actions=tuple(actions),
        )
