"""pos3's SigV4 signer gives, header for header, what botocore's S3 signer gives.

botocore signs first; its ``X-Amz-Date`` is then given to pos3's signer, so both sign the same
moment without touching botocore's clock.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from pos3._direct import list_query, quote_key
from pos3._sigv4 import EMPTY_SHA256, UNSIGNED_PAYLOAD, Signer, host_of, payload_hash

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def botocore_signed(method: str, url: str, headers: dict[str, str], body: bytes, token: str | None,
                    region: str, context: dict[str, Any] | None = None) -> dict[str, str]:
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    request.context.update(context or {})
    S3SigV4Auth(ReadOnlyCredentials("AKIDEXAMPLE", SECRET, token), "s3", region).add_auth(request)
    return dict(request.headers.items())


def both(method: str, url: str, headers: dict[str, str], body: bytes = b"", token: str | None = None,
         region: str = "us-east-1", checksum_header: str | None = None) -> tuple[dict[str, str], dict[str, str]]:
    context: dict[str, Any] = {}
    if checksum_header is not None:  # what pos3's direct PUT tells botocore's signer today
        context = {"has_streaming_input": True, "checksum": {"request_algorithm": {"in": "header",
                                                                                   "name": checksum_header}}}
    theirs = botocore_signed(method, url, headers, body, token, region, context)
    mine = Signer("AKIDEXAMPLE", SECRET, token, region).sign(
        method, url, headers, payload_hash(url, body, checksum_header=checksum_header), theirs["X-Amz-Date"])
    return mine, theirs


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:5000/bucket/a/b.bin",
    "https://bucket.s3.eu-west-3.amazonaws.com/k%20%2B%3D.txt",
    "https://S3.Example.COM:443/bucket/k",  # default port left out, host lowercase
    "http://s3.example.com:80/bucket/k",
    "https://s3.example.com:8443/bucket/%E2%82%AC/~x",
    "http://[::1]:9000/bucket/k",
])
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////wEaDAbc+token="])
def test_a_get_is_signed_as_botocore_signs_it(url: str, token: str | None) -> None:
    headers = {"Range": "bytes=0-99", "If-Match": '"0123abcd"', "x-amz-checksum-mode": "ENABLED"}
    mine, theirs = both("GET", url, headers, token=token)
    assert mine == theirs


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("checksum", ["x-amz-checksum-crc32", "Content-MD5"])
def test_a_put_is_signed_as_botocore_signs_it(scheme: str, checksum: str) -> None:
    body = b"payload " * 1000
    headers = {"x-amz-meta-pos3-xxh3": "00ff", "x-amz-meta-note": "two  spaces\tand tab ",
               checksum: "AAAAAA==", "Content-Length": str(len(body)), "User-Agent": "pos3/1 (not signed)"}
    mine, theirs = both("PUT", f"{scheme}://h:9000/bucket/dir/file.bin", headers, body, region="eu-west-3",
                        checksum_header=checksum)
    assert mine == theirs
    # Over HTTPS the checksum header and TLS protect the body; over HTTP its SHA-256 is signed.
    expected = UNSIGNED_PAYLOAD if scheme == "https" else hashlib.sha256(body).hexdigest()
    assert mine["X-Amz-Content-SHA256"] == expected


def test_a_listing_query_is_sorted_as_botocore_sorts_it() -> None:
    query = list_query({"Prefix": "data/sets/é x+y", "ContinuationToken": "tok/en==", "Delimiter": "/"})
    mine, theirs = both("GET", f"https://b.s3.amazonaws.com/?{query}", {})
    assert mine == theirs
    mine, theirs = both("GET", "http://h:9000/b?prefix=z&list-type=2&continuation-token=a%3D", {})  # unsorted
    assert mine == theirs
    assert mine["X-Amz-Content-SHA256"] == EMPTY_SHA256


def test_headers_given_in_two_cases_are_signed_as_one_list() -> None:
    mine, theirs = both("GET", "http://h/b/k", {"X-Amz-Meta-A": "1", "x-amz-meta-a": "2"})
    assert mine == theirs


def test_an_explicit_payload_signing_setting_wins() -> None:
    assert payload_hash("https://h/b/k", b"x", checksum_header="Content-MD5", signing=True) == hashlib.sha256(
        b"x").hexdigest()
    assert payload_hash("http://h/b/k", b"x", signing=False) == UNSIGNED_PAYLOAD


def test_host_of_follows_botocore() -> None:
    assert host_of("https://Bucket.S3.amazonaws.com/k") == "bucket.s3.amazonaws.com"
    assert host_of("http://h:80/x") == "h" and host_of("http://h:443/x") == "h:443"
    assert host_of("http://[fe80::1]:9000/x") == "[fe80::1]:9000"


@settings(max_examples=60, deadline=None)
@given(key=st.text(min_size=1, max_size=30).filter(lambda k: "\x00" not in k),
       value=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
       method=st.sampled_from(["GET", "PUT", "HEAD", "DELETE"]))
def test_any_key_and_header_value_sign_alike(key: str, value: str, method: str) -> None:
    url = "https://s3.example.com/bucket/" + quote_key(key)
    mine, theirs = both(method, url, {"x-amz-meta-v": value}, b"body" if method == "PUT" else b"")
    assert mine == theirs


def test_the_signing_key_is_derived_once_per_day() -> None:
    signer = Signer("AKIDEXAMPLE", SECRET, None, "us-east-1")
    first = signer.sign("GET", "http://h/b/k", {}, EMPTY_SHA256, "20261201T000000Z")
    again = signer.sign("GET", "http://h/b/k", {}, EMPTY_SHA256, "20261201T000000Z")
    next_day = signer.sign("GET", "http://h/b/k", {}, EMPTY_SHA256, "20261202T000000Z")
    assert first == again and first["Authorization"] != next_day["Authorization"]
    assert "/20261202/us-east-1/s3/aws4_request," in next_day["Authorization"]
