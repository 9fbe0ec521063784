"""s3:// URLs: parsing, the profile selector, what counts as local, and prefix overlap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pos3 import InvalidURLError
from pos3._urls import S3URL, is_url_like, overlaps, parse_s3_url

PROPERTY = settings(max_examples=200, deadline=None)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bucket/key", S3URL("bucket", "key")),
        ("s3://bucket/a/b.txt", S3URL("bucket", "a/b.txt")),
        ("s3://bucket/dir/", S3URL("bucket", "dir/", trailing_slash=True)),
        ("s3://bucket", S3URL("bucket", "")),
        ("s3://bucket/", S3URL("bucket", "", trailing_slash=True)),
        ("s3://nebius@bucket/key", S3URL("bucket", "key", profile="nebius")),
        ("s3://my-profile_2@my.bucket-1/k", S3URL("my.bucket-1", "k", profile="my-profile_2")),
        ("s3://b/x", S3URL("b", "x")),
        ("s3://bucket/user@example.com/f", S3URL("bucket", "user@example.com/f")),
        ("s3://bucket/a..b/c", S3URL("bucket", "a..b/c")),
        ("s3://bucket/t:1@2", S3URL("bucket", "t:1@2")),
    ],
)
def test_parse(url: str, expected: S3URL) -> None:
    assert parse_s3_url(url) == expected


def test_parts_of_a_url() -> None:
    url = parse_s3_url("s3://p@bucket/data/")
    assert (url.stem, url.dir_prefix, url.trailing_slash) == ("data", "data/", True)
    assert str(url) == "s3://bucket/data/"  # the profile selector is not part of the object's name
    assert url.child("data/x") == "s3://bucket/data/x"
    whole = parse_s3_url("s3://bucket")
    assert (whole.stem, whole.dir_prefix) == ("", "")


@pytest.mark.parametrize(
    "url",
    [
        "s3:/x",
        "s3://",
        "s3:///key",
        "s3:bucket/key",
        "http://bucket/key",
        "https://s3.amazonaws.com/bucket/key",
        "S3://bucket/key",
        "s3://@bucket/key",
        "s3://bad name@bucket/key",
        "s3://p@/key",
        "s3://-bucket/key",
        "s3://bu cket/key",
        "s3://bucket:9000/key",
        "s3://bucket/a\x00b",
        "s3://bucket/../etc",
        "s3://bucket/a/../../b",
        "s3://bucket/./a",
        " s3://bucket/key",
        "",
    ],
)
def test_malformed_urls_raise_invalid_url_error_naming_the_url(url: str) -> None:
    with pytest.raises(InvalidURLError) as info:
        parse_s3_url(url)
    assert isinstance(info.value, ValueError)
    assert repr(url) in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIAEXAMPLE:s3cr3t@bucket/k",
        "s3://AKIAEXAMPLE:s3cr3t/Key+x@bucket/k",
        "s3://AKIAEXAMPLE:s3cr3t/Key+x@",
        "S3://AKIAEXAMPLE:s3cr3t@bucket/k",
        "https://user:s3cr3t@host/x",
    ],
)
def test_credentials_in_a_url_never_reach_the_message(url: str) -> None:
    with pytest.raises(InvalidURLError) as info:
        parse_s3_url(url)
    assert "s3cr3t" not in str(info.value) and "s3cr3t" not in repr(info.value)
    assert "***@" in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        "s3://bucket/key",
        "s3:/x",
        "s3:bucket",
        "S3://bucket",
        "http://x/y",
        "file:///tmp/x",
        "gs://b/k",
        "s3:",
        " s3://bucket/key",
        "\ts3://bucket/key",
    ],
)
def test_url_like(value: str) -> None:
    assert is_url_like(value)


@pytest.mark.parametrize(
    "value",
    ["data", "./data", "/tmp/data", "s3", "s3data", "~/s3/bucket", "../s3://x", "a:b", "/tmp/s3:x", "my.s3:z"],
)
def test_local_paths_are_not_url_like(value: str) -> None:
    assert not is_url_like(value)


def test_overlap_examples() -> None:
    assert not overlaps("data", "data_v2/x")
    assert not overlaps("data/", "data_v2")
    assert overlaps("data", "data")
    assert overlaps("data", "data/")
    assert overlaps("data", "data/x/y")
    assert overlaps("data/x/y", "data")
    assert overlaps("", "anything")
    assert not overlaps("a/b", "a/c")
    assert overlaps("a//b", "a/b/c")  # one local folder either way


# ---------------------------------------------------------------------------------------------- properties

segment = st.sampled_from(["a", "b", "ab", "a_b", "a-b", "a.b", "x y"])
loose = st.lists(st.sampled_from(["a", "b", "ab", ""]), max_size=4)
key_parts = st.lists(segment, max_size=4)
buckets = st.from_regex(r"[a-z0-9][a-z0-9.\-]{0,20}", fullmatch=True)
profiles = st.none() | st.from_regex(r"[A-Za-z0-9_\-]{1,12}", fullmatch=True)


@PROPERTY
@given(buckets, key_parts, profiles, st.booleans())
def test_parse_round_trip(bucket: str, parts: list[str], profile: str | None, slash: bool) -> None:
    key = "/".join(parts) + ("/" if slash and parts else "")
    url = f"s3://{profile + '@' if profile else ''}{bucket}/{key}"
    parsed = parse_s3_url(url)
    assert parsed == S3URL(bucket, key, profile, url.endswith("/"))
    assert parse_s3_url(str(parsed)) == S3URL(bucket, key, None, str(parsed).endswith("/"))
    assert is_url_like(url)


@PROPERTY
@given(key_parts, key_parts, st.booleans(), st.booleans())
def test_overlap_is_segment_prefix(left: list[str], right: list[str], ls: bool, rs: bool) -> None:
    a = "/".join(left) + ("/" if ls else "")
    b = "/".join(right) + ("/" if rs else "")
    n = min(len(left), len(right))
    assert overlaps(a, b) == (left[:n] == right[:n])
    assert overlaps(a, b) == overlaps(b, a)


@PROPERTY
@given(loose, loose)
def test_overlap_ignores_empty_segments(left: list[str], right: list[str]) -> None:
    a, b = [p for p in left if p], [p for p in right if p]
    n = min(len(a), len(b))
    assert overlaps("/".join(left), "/".join(right)) == (a[:n] == b[:n])


def test_bucket_listing_urls() -> None:
    from pos3._urls import bucket_listing

    assert bucket_listing("s3://") == (True, None)
    assert bucket_listing("s3:///") == (True, None)
    assert bucket_listing("s3://lab@") == (True, "lab")
    assert bucket_listing("s3://lab@/") == (True, "lab")
    assert bucket_listing("s3://bucket") == (False, None)
    assert bucket_listing("s3://lab@bucket/x") == (False, None)
    assert bucket_listing("./s3:") == (False, None)
