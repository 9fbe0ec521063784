"""Object keys to local paths: nothing escapes the download folder, collisions are reported."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pos3 import UnsafeKeyError
from pos3._keys import RESERVED_NAME, find_collisions, join_key, key_paths, relative_path

PROPERTY = settings(max_examples=200, deadline=None)


@pytest.mark.parametrize(
    ("key", "prefix", "rel"),
    [
        ("dir/a/b.txt", "dir/", "a/b.txt"),
        ("a/b", "", "a/b"),
        ("a//b", "", "a/b"),
        ("dir//a///b", "dir/", "a/b"),
        ("dir/a/", "dir/", "a"),
        ("dir/", "dir/", ""),
        ("dir/..a/b..", "dir/", "..a/b.."),
        ("dir/...", "dir/", "..."),
        ("k.bin", "k.bin", ""),
    ],
)
def test_relative_path(key: str, prefix: str, rel: str) -> None:
    assert relative_path(key, prefix) == rel


@pytest.mark.parametrize(
    ("key", "prefix"),
    [
        ("../etc/passwd", ""),
        ("dir/../../x", "dir/"),
        ("dir/a/../../../x", "dir/"),
        ("a/./b", ""),
        ("/etc/passwd", ""),
        ("dir/..\\..\\x", "dir/"),
        ("dir/a\\b", "dir/"),
        ("dir/a\x00b", "dir/"),
        ("dir/" + "n" * 256, "dir/"),
        ("other/x", "dir/"),
        (f"dir/{RESERVED_NAME}/x", "dir/"),
        (f"{RESERVED_NAME}", ""),
    ],
)
def test_unsafe_keys_are_refused_by_name(key: str, prefix: str) -> None:
    with pytest.raises(UnsafeKeyError) as info:
        relative_path(key, prefix)
    assert repr(key) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_join_key_inverts_relative_path() -> None:
    assert join_key("dir/", "a/b") == "dir/a/b"
    assert relative_path(join_key("dir/", "a/b"), "dir/") == "a/b"


@pytest.mark.parametrize(
    ("keys", "count"),
    [
        (["a//b", "a/b"], 1),
        (["a", "a/b"], 1),
        (["a/b", "a"], 1),
        (["a", "a/b/c"], 1),
        (["a", "ab/c", "a.txt"], 0),
        (["a/b", "a/c", "b"], 0),
        (["x//y", "x/y", "x///y"], 2),
    ],
)
def test_find_collisions(keys: list[str], count: int) -> None:
    problems = find_collisions((k, relative_path(k, "")) for k in keys)
    assert len(problems) == count
    for message in problems:
        assert sum(repr(k) in message for k in keys) >= 2  # names both keys


# ---------------------------------------------------------------------------------------------- properties

PIECES = ["a", "b", ".", "..", "...", "", "\\", "\x00", "c d", "é"]
keys = st.lists(st.sampled_from(PIECES), min_size=1, max_size=6).map("/".join)


@PROPERTY
@given(st.sampled_from(["", "p/", "p/q/"]), keys)
def test_a_key_never_becomes_a_path_outside_the_root(prefix: str, rest: str) -> None:
    key = prefix + rest
    try:
        rel = relative_path(key, prefix)
    except UnsafeKeyError as exc:
        assert repr(key) in str(exc)
        return
    root = "/root/dl"
    target = posixpath.normpath(posixpath.join(root, rel))
    assert target == root or target.startswith(root + "/")
    assert rel == "/".join(p for p in rest.split("/") if p)  # only empty segments collapse
    assert "\x00" not in rel and "\\" not in rel and not rel.startswith("/")
    assert all(part not in (".", "..") for part in rel.split("/"))


@PROPERTY
@given(st.lists(st.lists(st.sampled_from(["a", "b", ""]), min_size=1, max_size=3).map("/".join), max_size=6))
def test_collisions_exactly_when_paths_clash(raw: list[str]) -> None:
    pairs = []
    for key in raw:
        if key.startswith("/") or key.endswith("/") or not key:
            continue  # absolute (refused) or a directory marker, not a file key
        pairs.append((key, relative_path(key, "")))
    rels = [rel for _, rel in pairs]
    clash = len(set(rels)) != len(rels) or any(
        other.startswith(rel + "/") for rel in set(rels) for other in set(rels)
    )
    assert bool(find_collisions(pairs)) == clash


def test_reserved_name_is_the_staging_folder_name() -> None:
    from pos3 import _local

    assert _local.STAGING_DIRNAME == RESERVED_NAME


def _reference_path(key: str, prefix: str) -> str | None:
    """The rules of `relative_path`, spelled out one by one; ``None``: refused."""
    rest = key[len(prefix):]
    parts = [p for p in rest.split("/") if p]
    if "\x00" in rest or "\\" in rest or (rest.startswith("/") and not prefix):
        return None
    if any(p in (".", "..", RESERVED_NAME) or len(p.encode("utf-8", "surrogatepass")) > 255 for p in parts):
        return None
    return "/".join(parts)


LONG_PIECES = ["a", ".", "..", ".a", "a.", "", RESERVED_NAME, RESERVED_NAME + "x", "x" * 200, "x" * 256,
               "é" * 127, "é" * 128, "\\", "\x00", "\ud800"]


@PROPERTY
@given(st.sampled_from(["", "p/", "p/q/"]),
       st.lists(st.sampled_from(LONG_PIECES), min_size=1, max_size=5).map("/".join))
def test_relative_path_follows_its_rules_on_every_path(prefix: str, rest: str) -> None:
    # Plain keys take a shortcut of a few scans; hidden files, long or non-ASCII keys the full
    # walk: both must give the rules' answer.
    want = _reference_path(prefix + rest, prefix)
    if want is None:
        with pytest.raises(UnsafeKeyError):
            relative_path(prefix + rest, prefix)
    else:
        assert relative_path(prefix + rest, prefix) == want


def test_find_collisions_names_the_nearest_file_above() -> None:
    keys = ["a", "a/b", "a/b/c/d", "a/x/y", "z/y"]
    assert find_collisions((k, k) for k in keys) == [
        "key 'a' is a file but key 'a/b' needs 'a' to be a folder",
        "key 'a/b' is a file but key 'a/b/c/d' needs 'a/b' to be a folder",
        "key 'a' is a file but key 'a/x/y' needs 'a' to be a folder",
    ]


def test_key_paths_pairs_every_safe_key_in_listing_order() -> None:
    from pos3._plan import RemoteFile

    def listed(*keys: str) -> tuple[list[RemoteFile], dict[str, RemoteFile], set[str]]:
        files = [RemoteFile(k, 1, "e") for k in keys]
        by_path: dict[str, RemoteFile] = {}
        refused: set[str] = set()
        for f in files:
            try:
                by_path[relative_path(f.key, "p/")] = f
            except UnsafeKeyError:
                refused.add(f.key)
        return files, by_path, refused

    # Every path its own: the pairs come from the map.
    assert list(key_paths(*listed("p/b", "p/a/x", "p/../y", "p/c"), "p/")) == [
        ("p/b", "b"), ("p/a/x", "a/x"), ("p/c", "c")]
    # Two keys on one path: both are paired, so the clash is found and named.
    pairs = list(key_paths(*listed("p/a//b", "p/../y", "p/a/b"), "p/"))
    assert pairs == [("p/a//b", "a/b"), ("p/a/b", "a/b")]
    assert find_collisions(pairs) == ["keys 'p/a//b' and 'p/a/b' both map to local path 'a/b'"]
