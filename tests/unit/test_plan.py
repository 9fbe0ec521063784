"""The planner: examples of each rule, and properties over random trees applied in a model.

The property tests build a remote listing, a local tree and records (see tests/strategies.py),
ask the planner, answer its checks with the model's ground truth, re-plan, then carry the plan
out on an in-memory tree with the engine's order (clear, copies, deletes) and strict rules (no
delete of something absent, no write below a file, no folder delete while it holds anything).
The result must be the source tree, and a second plan on the result must be empty.
"""

from __future__ import annotations

import copy as copy_module
import itertools

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pos3._exclude import Excluder
from pos3._plan import (
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
    TransferPlan,
    ancestors,
    plan_download,
    plan_upload,
)
from tests.strategies import (
    EXCLUDES,
    PREFIXES,
    SETTLED,
    LFile,
    LocalWorld,
    RemoteWorld,
    etag,
    local_worlds,
    records_for,
    remote_worlds,
)

PROPERTY = settings(max_examples=200, deadline=None)
_inodes = itertools.count(10_000)


# ---------------------------------------------------------------------------------------------- helpers


def obj(key: str, content: str) -> RemoteFile:
    return RemoteFile(key, len(content), etag(content))


def lf(content: str, mtime: int = 1, inode: int = 1) -> LocalFile:
    return LocalFile(len(content), mtime, inode)


def rec(key: str, content: str, mtime: int = 1, inode: int = 1) -> Record:
    return Record(key, etag(content), len(content), len(content), mtime, inode, content, recorded_ns=SETTLED)


def truth_download(local: LocalWorld, remote: RemoteWorld, records: dict[str, Record], checks: tuple[Check, ...]
                   ) -> dict[str, bool]:
    """What the engine's hashing would answer, from the model's contents."""
    answers: dict[str, bool] = {}
    for check in checks:
        here = local.files[check.rel].content
        if check.kind is CheckKind.LOCAL_VS_RECORD:
            answers[check.rel] = here == records[check.rel].xxh3
        else:
            answers[check.rel] = here == remote.files[check.rel]
    return answers


def is_protected(local: LocalWorld, d: str, exclude: Excluder) -> bool:
    """Whether local folder ``d`` holds something excluded (it must then never be removed)."""
    return any(exclude.excluded(r) and d in set(ancestors(r)) for r in list(local.files) + list(local.dirs))


def final_download(prefix: str, remote: RemoteWorld, local: LocalWorld, records: dict[str, Record], *,
                   delete: bool, exclude: Excluder) -> Plan:
    first = plan_download(prefix, remote.tree(prefix), local.tree(), records, delete=delete, exclude=exclude)
    for check in first.checks:
        assert check.rel in local.files, "a check needs a local file"
        if check.kind is CheckKind.LOCAL_VS_RECORD:
            assert check.rel in records
        else:
            assert check.rel in remote.files
    evidence = truth_download(local, remote, records, first.checks)
    plan = plan_download(prefix, remote.tree(prefix), local.tree(), records, delete=delete, exclude=exclude,
                         evidence=evidence)
    assert plan.final
    # Determinism: the same inputs give the same plan (a dry run shows exactly what runs).
    assert plan == plan_download(prefix, remote.tree(prefix), local.tree(), records, delete=delete,
                                 exclude=exclude, evidence=evidence)
    # ... whatever order the listing and the scan came in.
    shuffled_remote = RemoteTree(dict(reversed(remote.tree(prefix).files.items())), frozenset(remote.markers))
    shuffled_local = LocalTree(dict(reversed(local.tree().files.items())), frozenset(local.dirs))
    assert plan == plan_download(prefix, shuffled_remote, shuffled_local, dict(reversed(records.items())),
                                 delete=delete, exclude=exclude, evidence=evidence)
    # Evidence only settles checks: it never changes clears or deletes.
    assert (plan.clear, plan.deletes) == (first.clear, first.deletes)
    # Files are copied, checked, adopted and refreshed in path order (the listing's need not be).
    for rels in ([c.rel for c in plan.copies if not c.is_dir], [c.rel for c in first.checks], plan.adopt,
                 plan.refresh):
        assert list(rels) == sorted(rels)
    return plan


def apply_download(prefix: str, plan: Plan, remote: RemoteWorld, local: LocalWorld,
                   records: dict[str, Record]) -> tuple[LocalWorld, dict[str, Record], set[str]]:
    """Carry out a download plan on a copy of ``local``; returns the tree, records, failed copies."""
    out = copy_module.deepcopy(local)
    recs = dict(records)
    failed: set[str] = set()
    for d in plan.clear:
        assert d.key == prefix + d.rel
        if d.is_dir:
            assert d.rel in out.dirs, f"clear of absent folder {d.rel!r}"
            below = d.rel + "/"
            out.dirs = {x for x in out.dirs if x != d.rel and not x.startswith(below)}
            for f in [f for f in out.files if f.startswith(below)]:
                del out.files[f]
                recs.pop(f, None)
        else:
            assert d.rel in out.files, f"clear of absent file {d.rel!r}"
            del out.files[d.rel]
        recs.pop(d.rel, None)
    for rel in plan.adopt:
        f, o = out.files[rel], remote.tree(prefix).files[rel]
        recs[rel] = Record(o.key, o.etag, o.size, len(f.content), f.mtime_ns, f.inode, f.content,
                           recorded_ns=SETTLED)
    for rel in plan.refresh:
        f, r = out.files[rel], recs[rel]
        assert f.content == r.xxh3, "refresh of a file whose content changed"
        recs[rel] = Record(r.key, r.etag, r.size, len(f.content), f.mtime_ns, f.inode, r.xxh3,
                           recorded_ns=SETTLED)
    for c in plan.copies:
        parents = list(ancestors(c.rel))
        if any(p in out.files for p in parents):
            raise AssertionError(f"copy {c.rel!r} below a file")
        if c.is_dir:
            assert c.key == prefix + c.rel + "/"
            assert c.rel not in out.files, f"folder {c.rel!r} over a file"
            out.dirs.update([*parents, c.rel])
            continue
        assert c.key == prefix + c.rel and c.size == len(remote.files[c.rel])
        if c.rel in out.dirs:
            failed.add(c.rel)  # the engine reports it by name; the folder is left alone
            continue
        out.dirs.update(parents)
        content = remote.files[c.rel]
        out.files[c.rel] = LFile(content, 5_000, next(_inodes))
        recs[c.rel] = Record(c.key, etag(content), len(content), len(content), 5_000, out.files[c.rel].inode,
                             content, recorded_ns=SETTLED)
    for d in plan.deletes:
        assert d.key == prefix + d.rel
        if d.is_dir:
            assert d.rel in out.dirs, f"delete of absent folder {d.rel!r}"
            assert not any(x.startswith(d.rel + "/") for x in list(out.files) + list(out.dirs)), (
                f"delete of non-empty folder {d.rel!r}")
            out.dirs.remove(d.rel)
        else:
            assert d.rel in out.files, f"delete of absent file {d.rel!r}"
            del out.files[d.rel]
            recs.pop(d.rel, None)
    out.check()
    return out, recs, failed


def expected_download(remote: RemoteWorld, local: LocalWorld, *, delete: bool, exclude: Excluder
                      ) -> tuple[dict[str, str], set[str], set[str]]:
    """The tree a download must leave: (file contents, folders, copies that must fail)."""
    rfiles = {r: c for r, c in remote.files.items() if not exclude.excluded(r)}
    kept_remote = RemoteWorld(rfiles, {m for m in remote.markers if not exclude.excluded(m)})
    rdirs = kept_remote.dirs()
    blocked = {r for r in rfiles if r in local.dirs and is_protected(local, r, exclude)}
    replaced = {r for r in rfiles if r in local.dirs} - blocked  # local folders a remote file replaces

    def survives(rel: str) -> bool:
        return rel not in replaced and not any(a in replaced for a in ancestors(rel))

    files = {r: c for r, c in rfiles.items() if r not in blocked}
    files.update({r: f.content for r, f in local.files.items() if exclude.excluded(r)})
    dirs = set(rdirs)
    for d in local.dirs:
        if exclude.excluded(d) or is_protected(local, d, exclude):
            dirs.add(d)
    if not delete:
        for r, f in local.files.items():
            if r not in rfiles and r not in rdirs and survives(r):
                files.setdefault(r, f.content)
        dirs.update(d for d in local.dirs if survives(d) and d not in rfiles)
    return files, dirs, blocked


def final_upload(prefix: str, local: LocalWorld, remote: RemoteWorld, records: dict[str, Record], *,
                 delete: bool, exclude: Excluder) -> Plan:
    first = plan_upload(prefix, local.tree(), remote.tree(prefix), records, delete=delete, exclude=exclude)
    for check in first.checks:
        assert check.rel in local.files
        if check.kind is CheckKind.LOCAL_VS_RECORD:
            assert check.rel in records
        else:
            assert check.rel in remote.files
    evidence = truth_download(local, remote, records, first.checks)
    plan = plan_upload(prefix, local.tree(), remote.tree(prefix), records, delete=delete, exclude=exclude,
                       evidence=evidence)
    assert plan.final and not plan.clear
    assert plan == plan_upload(prefix, local.tree(), remote.tree(prefix), records, delete=delete,
                               exclude=exclude, evidence=evidence)
    shuffled_remote = RemoteTree(dict(reversed(remote.tree(prefix).files.items())), frozenset(remote.markers))
    shuffled_local = LocalTree(dict(reversed(local.tree().files.items())), frozenset(local.dirs))
    assert plan == plan_upload(prefix, shuffled_local, shuffled_remote, dict(reversed(records.items())),
                               delete=delete, exclude=exclude, evidence=evidence)
    assert plan.deletes == first.deletes
    for rels in ([c.rel for c in plan.copies if not c.is_dir], [c.rel for c in first.checks], plan.adopt,
                 plan.refresh, [d.rel for d in plan.deletes if not d.is_dir]):
        assert list(rels) == sorted(rels)
    return plan


def apply_upload(prefix: str, plan: Plan, local: LocalWorld, remote: RemoteWorld, records: dict[str, Record]
                 ) -> tuple[RemoteWorld, dict[str, Record]]:
    out = copy_module.deepcopy(remote)
    recs = dict(records)
    for rel in plan.adopt:
        f, o = local.files[rel], remote.tree(prefix).files[rel]
        assert f.content == remote.files[rel], "adopted a file whose content differs"
        recs[rel] = Record(o.key, o.etag, o.size, len(f.content), f.mtime_ns, f.inode, f.content,
                           recorded_ns=SETTLED)
    for rel in plan.refresh:
        f, r = local.files[rel], recs[rel]
        assert f.content == r.xxh3, "refresh of a file whose content changed"
        recs[rel] = Record(r.key, r.etag, r.size, len(f.content), f.mtime_ns, f.inode, r.xxh3,
                           recorded_ns=SETTLED)
    for c in plan.copies:
        if c.is_dir:
            assert c.key == prefix + c.rel + "/" and c.size == 0
            out.markers.add(c.rel)
            continue
        f = local.files[c.rel]
        assert c.key == prefix + c.rel and c.size == len(f.content)
        out.files[c.rel] = f.content
        recs[c.rel] = Record(c.key, etag(f.content), len(f.content), len(f.content), f.mtime_ns, f.inode,
                             f.content, recorded_ns=SETTLED)
    for d in plan.deletes:
        if d.is_dir:
            assert d.key == prefix + d.rel + "/"
            assert d.rel in out.markers, f"delete of absent marker {d.rel!r}"
            out.markers.remove(d.rel)
        else:
            assert d.key == prefix + d.rel
            assert d.rel in out.files, f"delete of absent object {d.rel!r}"
            del out.files[d.rel]
            recs.pop(d.rel, None)
    return out, recs


# ---------------------------------------------------------------------------------------------- properties


def _events(plan: Plan, blocked: bool = False) -> None:
    """Label examples so `--hypothesis-show-statistics` shows the cases are really exercised."""
    for name, hit in [("clear", plan.clear), ("deletes", plan.deletes), ("adopt", plan.adopt),
                      ("refresh", plan.refresh), ("blocked by excluded files", blocked)]:
        if hit:
            event(name)
    for c in plan.copies:
        event("marker" if c.is_dir else str(c.reason))


@st.composite
def download_cases(draw: st.DrawFn) -> tuple[str, RemoteWorld, LocalWorld, dict[str, Record], bool, Excluder]:
    prefix = draw(st.sampled_from(PREFIXES))
    remote = draw(remote_worlds())
    local = draw(local_worlds(remote))
    records = draw(records_for(prefix, local, remote))
    return prefix, remote, local, records, draw(st.booleans()), Excluder(draw(st.sampled_from(EXCLUDES)))


@st.composite
def upload_cases(draw: st.DrawFn) -> tuple[str, LocalWorld, RemoteWorld, dict[str, Record], bool, Excluder]:
    prefix = draw(st.sampled_from(PREFIXES))
    remote = draw(remote_worlds())
    local = draw(local_worlds(remote))
    records = draw(records_for(prefix, local, remote))
    return prefix, local, remote, records, draw(st.booleans()), Excluder(draw(st.sampled_from(EXCLUDES)))


@PROPERTY
@given(download_cases())
def test_download_plan_makes_the_local_tree_the_remote_tree(
    case: tuple[str, RemoteWorld, LocalWorld, dict[str, Record], bool, Excluder],
) -> None:
    prefix, remote, local, records, delete, exclude = case
    plan = final_download(prefix, remote, local, records, delete=delete, exclude=exclude)
    after, new_records, failed = apply_download(prefix, plan, remote, local, records)

    files, dirs, blocked = expected_download(remote, local, delete=delete, exclude=exclude)
    _events(plan, blocked=bool(blocked))
    assert failed == blocked
    assert {r: f.content for r, f in after.files.items()} == files
    assert after.dirs == dirs
    for rel, f in local.files.items():
        if exclude.excluded(rel):
            assert after.files[rel] == f, f"excluded {rel!r} was touched"

    # The result is in sync: planning again changes nothing and needs no content check.
    again = plan_download(prefix, remote.tree(prefix), after.tree(), new_records, delete=delete, exclude=exclude)
    assert again.checks == () and again.clear == () and again.deletes == () and again.adopt == ()
    assert {c.rel for c in again.copies} == blocked


@PROPERTY
@given(upload_cases())
def test_upload_plan_makes_the_remote_tree_the_local_tree(
    case: tuple[str, LocalWorld, RemoteWorld, dict[str, Record], bool, Excluder],
) -> None:
    prefix, local, remote, records, delete, exclude = case
    plan = final_upload(prefix, local, remote, records, delete=delete, exclude=exclude)
    after, new_records = apply_upload(prefix, plan, local, remote, records)
    _events(plan)

    lfiles = {r: f.content for r, f in local.files.items() if not exclude.excluded(r)}
    ldirs = {d for d in local.dirs if not exclude.excluded(d)}
    empty = {d for d in ldirs if not any(x.startswith(d + "/") for x in list(lfiles) + list(ldirs))}
    # ...except a folder S3 already holds (excluded) objects in: it exists there without a marker.
    empty -= {a for r in remote.files if exclude.excluded(r) for a in ancestors(r)}
    want = dict(lfiles)
    want.update({r: c for r, c in remote.files.items() if exclude.excluded(r)})
    if not delete:
        for r, c in remote.files.items():
            want.setdefault(r, c)
    assert after.files == want
    kept_markers = {m for m in remote.markers if exclude.excluded(m) or m in ldirs or not delete}
    assert after.markers == kept_markers | empty

    again = plan_upload(prefix, local.tree(), after.tree(prefix), new_records, delete=delete, exclude=exclude)
    assert again == Plan(), again


# ---------------------------------------------------------------------------------------------- examples


def test_unchanged_trees_with_matching_records_plan_nothing_and_check_nothing() -> None:
    remote = RemoteTree({"a": obj("p/a", "xy"), "d/b": obj("p/d/b", "z")}, frozenset({"d", "e"}))
    local = LocalTree({"a": lf("xy", 3, 4), "d/b": lf("z", 5, 6)}, frozenset({"d", "e"}))
    records = {"a": rec("p/a", "xy", 3, 4), "d/b": rec("p/d/b", "z", 5, 6)}
    assert plan_download("p/", remote, local, records, delete=True) == Plan()
    assert plan_upload("p/", local, remote, records, delete=True) == Plan()


def test_download_reasons() -> None:
    remote = RemoteTree({
        "new": obj("new", "a"),
        "missing": obj("missing", "a"),
        "changed": obj("changed", "abc"),
        "remote": obj("remote", "zz"),
        "local": obj("local", "aa"),
        "grown": obj("grown", "aa"),
    })
    local = LocalTree({
        "changed": lf("a"),
        "remote": lf("aa", 1, 1),
        "local": lf("bb", 2, 1),  # same size, touched: content check against the record
        "grown": lf("aaa", 2, 1),
    })
    records = {
        "missing": rec("missing", "a"),
        "remote": rec("remote", "aa", 1, 1),  # a same-size rewrite remotely: new ETag
        "local": rec("local", "aa", 1, 1),
        "grown": rec("grown", "aa", 1, 1),
    }
    first = plan_download("", remote, local, records, delete=False)
    assert first.checks == (Check("local", CheckKind.LOCAL_VS_RECORD),)
    plan = plan_download("", remote, local, records, delete=False, evidence={"local": False})
    reasons = {c.rel: c.reason for c in plan.copies}
    assert reasons == {
        "new": Reason.NEW,
        "missing": Reason.MISSING,
        "changed": Reason.CHANGED,
        "remote": Reason.CHANGED_REMOTE,
        "local": Reason.CHANGED_LOCAL,
        "grown": Reason.CHANGED_LOCAL,
    }
    assert str(Reason.CHANGED_REMOTE) == "changed remotely"


def test_download_same_size_without_record_asks_for_a_content_check_then_adopts() -> None:
    remote = RemoteTree({"a": obj("a", "xy")})
    local = LocalTree({"a": lf("yx")})
    first = plan_download("", remote, local, {}, delete=True)
    assert first.checks == (Check("a", CheckKind.CONTENT_VS_REMOTE),) and first.copies == ()
    same = plan_download("", remote, local, {}, delete=True, evidence={"a": True})
    assert same == Plan(adopt=("a",))
    differ = plan_download("", remote, local, {}, delete=True, evidence={"a": False})
    assert differ.copies == (Copy("a", "a", 2, Reason.CHANGED),) and differ.adopt == ()


def test_download_touch_only_refreshes_the_record() -> None:
    remote = RemoteTree({"a": obj("a", "xy")})
    local = LocalTree({"a": lf("xy", 9, 1)})
    records = {"a": rec("a", "xy", 1, 1)}
    assert plan_download("", remote, local, records, delete=True).checks == (Check("a", CheckKind.LOCAL_VS_RECORD),)
    plan = plan_download("", remote, local, records, delete=True, evidence={"a": True})
    assert plan == Plan(refresh=("a",))


def test_download_record_of_another_key_is_ignored() -> None:
    remote = RemoteTree({"a": obj("p/a", "xy")})
    local = LocalTree({"a": lf("xy")})
    records = {"a": rec("q/a", "xy")}
    assert plan_download("p/", remote, local, records, delete=True).checks == (
        Check("a", CheckKind.CONTENT_VS_REMOTE),)


def test_upload_touch_uploads_nothing_and_refreshes() -> None:
    remote = RemoteTree({"a": obj("a", "xy")})
    local = LocalTree({"a": lf("xy", 9, 1)})
    records = {"a": rec("a", "xy", 1, 1)}
    first = plan_upload("", local, remote, records, delete=True)
    assert first.checks == (Check("a", CheckKind.LOCAL_VS_RECORD),) and first.copies == ()
    assert plan_upload("", local, remote, records, delete=True, evidence={"a": True}) == Plan(refresh=("a",))
    changed = plan_upload("", local, remote, records, delete=True, evidence={"a": False})
    assert changed.copies == (Copy("a", "a", 2, Reason.CHANGED_LOCAL),)


def test_upload_reasons() -> None:
    remote = RemoteTree({"remote": obj("remote", "zz"), "local": obj("local", "aa"), "changed": obj("changed", "a")})
    local = LocalTree({
        "new": lf("a"),
        "missing": lf("a"),
        "remote": lf("aa"),
        "local": lf("aaa", 2),
        "changed": lf("ab"),
    })
    records = {"missing": rec("missing", "a"), "remote": rec("remote", "aa"), "local": rec("local", "aa")}
    plan = plan_upload("", local, remote, records, delete=False)
    assert plan.final
    assert {c.rel: c.reason for c in plan.copies} == {
        "new": Reason.NEW,
        "missing": Reason.MISSING,
        "remote": Reason.CHANGED_REMOTE,  # someone rewrote it: the local side wins
        "local": Reason.CHANGED_LOCAL,
        "changed": Reason.CHANGED,
    }


def test_remote_folder_replaces_local_file_clear_first() -> None:
    remote = RemoteTree({"a/b": obj("a/b", "x")})
    local = LocalTree({"a": lf("y")})
    plan = plan_download("", remote, local, {"a": rec("a", "y")}, delete=False)
    assert plan.clear == (Delete("a", "a"),)
    assert plan.copies == (Copy("a/b", "a/b", 1, Reason.NEW),)
    assert plan.deletes == ()


def test_remote_file_replaces_local_folder_clear_first() -> None:
    remote = RemoteTree({"a": obj("a", "x")})
    local = LocalTree({"a/b": lf("y"), "a/c/d": lf("z")}, frozenset({"a", "a/c"}))
    plan = plan_download("", remote, local, {}, delete=True)
    assert plan.clear == (Delete("a", "a", is_dir=True),)
    assert plan.copies == (Copy("a", "a", 1, Reason.NEW),)
    assert plan.deletes == ()  # everything below went with the clear


def test_folder_holding_an_excluded_file_is_never_cleared_or_deleted() -> None:
    ex = Excluder(("*.tmp",))
    local = LocalTree({"a/x.tmp": lf("y"), "d/x.tmp": lf("y"), "d/f": lf("z")}, frozenset({"a", "d"}))
    remote = RemoteTree({"a": obj("a", "x")})
    plan = plan_download("", remote, local, {}, delete=True, exclude=ex)
    assert plan.clear == ()
    assert plan.deletes == (Delete("d/f", "d/f"),)


def test_remote_marker_below_a_local_file_clears_the_file() -> None:
    remote = RemoteTree({}, frozenset({"x/y"}))
    local = LocalTree({"x": lf("a")})
    plan = plan_download("", remote, local, {}, delete=True)
    assert plan.clear == (Delete("x", "x"),)
    assert plan.copies == (Copy("x/y", "x/y/", 0, Reason.NEW, is_dir=True),)
    assert plan.deletes == ()


def test_remote_marker_keeps_its_parent_folder() -> None:
    remote = RemoteTree({}, frozenset({"x/y"}))
    local = LocalTree({}, frozenset({"x"}))
    plan = plan_download("", remote, local, {}, delete=True)
    assert plan.deletes == ()
    assert plan.copies == (Copy("x/y", "x/y/", 0, Reason.NEW, is_dir=True),)


@pytest.mark.parametrize("marker", ["a", "a/b"])
def test_marker_that_collides_with_a_remote_file_is_ignored(marker: str) -> None:
    remote = RemoteTree({"a": obj("a", "x")}, frozenset({marker}))
    local = LocalTree({"a": lf("x")}, frozenset())
    plan = plan_download("", remote, local, {"a": rec("a", "x")}, delete=True)
    assert plan == Plan()


def test_upload_empty_dirs_become_markers_and_missing_ones_are_deleted() -> None:
    local = LocalTree({"d/f": lf("x")}, frozenset({"d", "e", "e/g", "h"}))
    remote = RemoteTree({"d/f": obj("p/d/f", "x")}, frozenset({"d", "h", "gone", "e"}))
    records = {"d/f": rec("p/d/f", "x")}
    plan = plan_upload("p/", local, remote, records, delete=True)
    assert plan.copies == (Copy("e/g", "p/e/g/", 0, Reason.NEW, is_dir=True),)
    assert plan.deletes == (Delete("gone", "p/gone/", is_dir=True),)
    keep = plan_upload("p/", local, remote, records, delete=False)
    assert keep.deletes == ()


def test_upload_of_a_single_file() -> None:
    local = LocalTree({"": lf("abc")})
    plan = plan_upload("k.bin", local, RemoteTree(), {}, delete=True)
    assert plan.copies == (Copy("", "k.bin", 3, Reason.NEW),)


def test_download_of_a_single_object_over_a_folder() -> None:
    remote = RemoteTree({"": obj("k.bin", "abc")})
    plan = plan_download("k.bin", remote, LocalTree(dirs=frozenset({""})), {}, delete=True)
    assert plan.clear == (Delete("", "k.bin", is_dir=True),)
    assert plan.copies == (Copy("", "k.bin", 3, Reason.NEW),)


def test_transfer_plan_lists_steps_in_order_with_reasons() -> None:
    remote = RemoteTree({"a/b": obj("p/a/b", "xy")})
    local = LocalTree({"a": lf("y"), "z": lf("q")})
    plan = plan_download("p/", remote, local, {}, delete=True)
    tp = TransferPlan.from_plans([(plan, lambda r: f"s3://b/p/{r}", lambda r: f"/L/{r}")])
    assert [(a.action, a.dst, a.reason) for a in tp.actions] == [
        ("delete", "/L/a", "replaced"),
        ("copy", "/L/a/b", "new"),
        ("delete", "/L/z", "absent from source"),
    ]
    assert tp.to_copy == [("s3://b/p/a/b", "/L/a/b")]
    assert tp.to_delete == ["/L/a", "/L/z"]
    assert tp.total_bytes == 2


@pytest.mark.parametrize(
    ("local", "records", "evidence", "expected"),
    [
        (LocalTree(), {}, None, Plan(copies=(Copy("", "k.bin", 3, Reason.NEW),))),
        (LocalTree(), {"": rec("k.bin", "abc")}, None, Plan(copies=(Copy("", "k.bin", 3, Reason.MISSING),))),
        (LocalTree({"": lf("abc", 1, 1)}), {"": rec("k.bin", "abc")}, None, Plan()),
        (LocalTree({"": lf("abc", 2, 1)}), {"": rec("k.bin", "abc")}, {"": True}, Plan(refresh=("",))),
        (LocalTree({"": lf("abd", 2, 1)}), {"": rec("k.bin", "abc")}, {"": False},
         Plan(copies=(Copy("", "k.bin", 3, Reason.CHANGED_LOCAL),))),
        (LocalTree({"": lf("abc", 1, 1)}), {"": rec("k.bin", "xyz")}, None,
         Plan(copies=(Copy("", "k.bin", 3, Reason.CHANGED_REMOTE),))),
        (LocalTree({"": lf("abc")}), {}, {"": True}, Plan(adopt=("",))),
        (LocalTree({"": lf("ab")}), {}, None, Plan(copies=(Copy("", "k.bin", 3, Reason.CHANGED),))),
    ],
)
def test_download_of_a_single_object(local: LocalTree, records: dict[str, Record], evidence: dict[str, bool] | None,
                                     expected: Plan) -> None:
    remote = RemoteTree({"": obj("k.bin", "abc")})
    assert plan_download("k.bin", remote, local, records, delete=True, evidence=evidence) == expected


def test_upload_of_a_single_file_in_sync_plans_nothing() -> None:
    local = LocalTree({"": lf("abc", 4, 5)})
    remote = RemoteTree({"": obj("k.bin", "abc")})
    assert plan_upload("k.bin", local, remote, {"": rec("k.bin", "abc", 4, 5)}, delete=True) == Plan()
    first = plan_upload("k.bin", local, remote, {}, delete=True)
    assert first.checks == (Check("", CheckKind.CONTENT_VS_REMOTE),)
    assert plan_upload("k.bin", local, remote, {}, delete=True, evidence={"": True}) == Plan(adopt=("",))


def test_a_recorded_file_whose_remote_size_changed_is_fetched_even_with_the_same_etag() -> None:
    # An ETag check fooled (a server reusing ETags, a record of a truncated placement): the size
    # alone proves another version.
    record = rec("p/a", "xy")
    remote = RemoteTree({"a": RemoteFile("p/a", 3, record.etag)}, frozenset())
    local = LocalTree({"a": lf("xy")}, frozenset())
    plan = plan_download("p/", remote, local, {"a": record}, delete=False)
    assert plan.copies == (Copy("a", "p/a", 3, Reason.CHANGED_REMOTE),)
    same = RemoteTree({"a": RemoteFile("p/a", 2, record.etag)}, frozenset())
    assert plan_download("p/", same, local, {"a": record}, delete=False).copies == ()
