"""The garbage rule of atomic publishing (pure): what a publish may delete, and what it must spare."""

from __future__ import annotations

from pos3._snapshot import GRACE, Manifest, SnapshotLayout, garbage

L = SnapshotLayout("p/")
NOW = "2026-12-01T12:00:00+00:00"
OLD = "2026-11-29T12:00:00+00:00"  # two days before NOW: past the grace period
YOUNG = "2026-12-01T11:59:00+00:00"  # one minute before NOW


def obj(name: str) -> str:
    return L.object_key(name)


def test_commits_older_than_the_kept_ones_go_and_kept_objects_stay() -> None:
    kept = [Manifest(3, {"a": ("a3", 1)}), Manifest(2, {"a": ("a2", 1)})]
    commits = [L.commit_key(1), L.commit_key(2), L.commit_key(3)]
    out = garbage(L, commits, kept, [obj("a2"), obj("a3")], modified={obj("a2"): OLD, obj("a3"): OLD}, now=NOW)
    assert out == [L.commit_key(1)]


def test_objects_of_a_superseded_commit_go_at_once() -> None:
    kept = [Manifest(3, {"a": ("a3", 1)}), Manifest(2, {"a": ("a2", 1)})]
    dropped = [Manifest(1, {"a": ("a1", 1)})]
    out = garbage(L, [L.commit_key(1)], kept, [obj("a1"), obj("a2"), obj("a3")], dropped=dropped,
                  modified={obj("a1"): YOUNG}, now=NOW)
    assert out == sorted([L.commit_key(1), obj("a1")])


def test_another_publishers_uncommitted_objects_are_spared_within_the_grace_period() -> None:
    # "b" was uploaded a minute ago by a publisher whose commit is not written yet: no commit
    # read refers to it, and it is younger than the grace period.
    kept = [Manifest(2, {"a": ("a2", 1)})]
    assert garbage(L, [], kept, [obj("a2"), obj("b")], modified={obj("b"): YOUNG}, now=NOW) == []


def test_an_unreferenced_object_older_than_the_grace_period_goes() -> None:
    kept = [Manifest(2, {"a": ("a2", 1)})]
    assert garbage(L, [], kept, [obj("a2"), obj("stale")], modified={obj("stale"): OLD}, now=NOW) == [obj("stale")]


def test_an_unknown_age_or_server_time_spares_the_object() -> None:
    kept = [Manifest(2, {"a": ("a2", 1)})]
    assert garbage(L, [], kept, [obj("x")], modified={}, now=NOW) == []
    assert garbage(L, [], kept, [obj("x")], modified={obj("x"): OLD}, now="") == []
    assert garbage(L, [], kept, [obj("x")], modified={obj("x"): "not a time"}, now=NOW) == []


def test_the_grace_boundary() -> None:
    kept = [Manifest(2, {})]
    at = "2026-12-01T00:00:00+00:00"
    assert GRACE == 24 * 3600.0
    assert garbage(L, [], kept, [obj("x")], modified={obj("x"): "2026-11-30T00:00:00+00:00"}, now=at) == [obj("x")]
    assert garbage(L, [], kept, [obj("x")], modified={obj("x"): "2026-11-30T00:00:01+00:00"}, now=at) == []
