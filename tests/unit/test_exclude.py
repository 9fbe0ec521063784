"""Exclude patterns: the documented examples, pathlib's right-anchored matching, and pruning."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pos3._exclude import Excluder

PROPERTY = settings(max_examples=200, deadline=None)

# Small alphabets so patterns and paths meet often.
NAMES = ("a", "b", "ab", "ba", "a.b", ".a", "[", "]", "-", "!", "^")
PIECES = ("a", "b", ".", "*", "?", "[ab]", "[!a]", "[a-b]", "[b-a]", "[]a]", "[!]a]", "[", "]", "!", "-")


def reference(pattern: str, rel: str) -> bool:
    """The documented semantics, written the slow obvious way on top of `fnmatchcase`."""
    anchored = pattern.startswith("/")
    pat = [s for s in pattern.split("/") if s and s != "."]
    parts = rel.split("/")

    def match(pi: int, si: int) -> bool:
        if pi == len(pat):
            return si == len(parts)
        if pat[pi] == "**":
            return any(match(pi + 1, k) for k in range(si, len(parts) + 1))
        return si < len(parts) and fnmatchcase(parts[si], pat[pi]) and match(pi + 1, si + 1)

    if not pat:
        return False
    return match(0, 0) if anchored else any(match(0, k) for k in range(len(parts) + 1))


segments = st.lists(st.sampled_from(PIECES), min_size=1, max_size=3).map("".join)
rels = st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map("/".join)


@st.composite
def patterns(draw: st.DrawFn, double_star: bool = True) -> str:
    # Without double_star, no segment may be "**" by itself (two "*" pieces joined make one).
    choices = segments | st.just("**") if double_star else segments.filter(lambda s: s != "**")
    body = "/".join(draw(st.lists(choices, min_size=1, max_size=3)))
    return ("/" if draw(st.booleans()) else "") + body


@pytest.mark.parametrize(
    ("pattern", "rel", "hit"),
    [
        ("*.tmp", "a/b/c.tmp", True),
        ("*.tmp", "c.tmp", True),
        ("*.tmp", "c.tmp.gz", False),
        ("logs", "logs", True),
        ("logs", "a/logs", True),
        ("logs", "logs2", False),
        ("/logs", "logs", True),
        ("/logs", "a/logs", False),
        ("a/*.txt", "x/a/b.txt", True),
        ("a/*.txt", "a/b/c.txt", False),
        ("/a/**/z", "a/z", True),
        ("/a/**/z", "a/b/c/z", True),
        ("/a/**/z", "b/a/z", False),
        ("**/z", "z", True),
        ("?.bin", "a/1.bin", True),
        ("?.bin", "a/12.bin", False),
        ("[ab].c", "b.c", True),
        ("[!ab].c", "b.c", False),
        ("[^ab].c", "x.c", True),
        ("data", "data_v2", False),
    ],
)
def test_documented_examples(pattern: str, rel: str, hit: bool) -> None:
    assert Excluder((pattern,)).matches(rel) is hit


def test_excluded_folder_prunes_its_subtree() -> None:
    ex = Excluder.of("cache")
    assert ex.excluded("cache") and ex.excluded("cache/a/b") and ex.excluded("x/cache/y")
    assert not ex.excluded("caches/a")
    rels = ["a", "cache/x", "b/cache/y/z", "b/c", "cache"]
    assert ex.filter(rels) == ["a", "b/c"]


def test_negated_class_never_matches_a_slash() -> None:
    ex = Excluder(("a[!x]b", "c[^x]d"))
    assert ex.matches("ayb") and ex.matches("cyd")
    assert not ex.matches("a/b") and not ex.matches("c/d")
    assert not ex.excluded("a/b") and not ex.excluded("q/c/d")


@pytest.mark.parametrize("pattern", ["[[]x", "[a&&b]", "[a||b]", "[a~~b]", "[a--b]", "[z-a]", "[!]", "[", "[\\]"])
def test_odd_classes_neither_warn_nor_fail(pattern: str) -> None:
    # pytest turns warnings into errors: a FutureWarning from `re` ("possible nested set") fails here.
    ex = Excluder((pattern,))
    assert isinstance(ex.matches("x"), bool)


def test_class_characters_are_literal_and_reversed_ranges_match_nothing() -> None:
    assert Excluder(("[[]x",)).matches("[x")
    assert Excluder(("[a&]",)).matches("&")
    assert not Excluder(("[z-a]",)).matches("z")
    assert Excluder(("[!]",)).matches("[!]")  # no closing bracket after "!": literal
    assert Excluder(("[]]",)).matches("]")


def test_many_stars_against_a_long_name_stay_fast() -> None:
    # Without atomic groups this backtracks through ~250**7 ways before failing (the test would
    # hit the per-test timeout); with them it is linear.
    ex = Excluder(("*a*a*a*a*a*a*a*b",))
    assert not ex.matches("a" * 250)
    assert ex.matches("a" * 250 + "b")


def test_empty_and_dot_patterns_exclude_nothing() -> None:
    for pats in [(), ("",), ("/",), (".",), ("./",)]:
        ex = Excluder(pats)
        assert not ex and not ex.excluded("a") and ex.filter(["a", "b/c"]) == ["a", "b/c"]
    assert Excluder(("./logs",)).matches("x/logs")
    assert Excluder(("...",)).matches("...")


def test_of() -> None:
    assert Excluder.of(None) == Excluder()
    assert Excluder.of("*.tmp") == Excluder(("*.tmp",))
    assert Excluder.of(["a", "b"]) == Excluder(("a", "b"))
    assert bool(Excluder.of("a")) and not Excluder.of([])


@PROPERTY
@given(patterns(), rels)
def test_matches_the_reference_semantics(pattern: str, rel: str) -> None:
    assert Excluder((pattern,)).matches(rel) == reference(pattern, rel)


@PROPERTY
@given(patterns(double_star=False), rels)
def test_relative_patterns_match_like_pathlib(pattern: str, rel: str) -> None:
    pattern = pattern.lstrip("/")
    if "^" in pattern or pattern.strip("/.") == "" or any(s == "." for s in pattern.split("/")):
        return  # fnmatch reads "[^" literally; pathlib refuses empty patterns and drops "." parts
    assert Excluder((pattern,)).matches(rel) == PurePosixPath(rel).match(pattern)


@PROPERTY
@given(st.lists(patterns(), max_size=3), st.lists(rels, max_size=8))
def test_excluded_and_filter_agree_on_pruning(pats: list[str], paths: list[str]) -> None:
    ex = Excluder(tuple(pats))
    for rel in paths:
        parts = rel.split("/")
        assert ex.excluded(rel) == any(ex.matches("/".join(parts[: i + 1])) for i in range(len(parts)))
    assert ex.filter(paths) == [r for r in paths if not ex.excluded(r)]
