"""The pure parts of direct requests: routes learned from botocore's requests, errors, checksums."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos3._direct import Route, _Digest, checksum_of, enabled, error_of, list_query, listing_of, quote_key, route_of

AUTH = ("AWS4-HMAC-SHA256 Credential=AKID/20261201/eu-west-3/s3/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=abc")


def test_a_path_style_url_gives_the_bucket_prefix_and_the_signing_region() -> None:
    route = route_of("http://127.0.0.1:9000/bucket/a%20b/c.bin", AUTH, "a b/c.bin")
    assert route == Route("http://127.0.0.1:9000/bucket/", "eu-west-3")


def test_a_virtual_hosted_url_and_its_query_string() -> None:
    route = route_of("https://bucket.s3.eu-west-3.amazonaws.com/k.bin?x-id=GetObject", AUTH, "k.bin")
    assert route == Route("https://bucket.s3.eu-west-3.amazonaws.com/", "eu-west-3")


def test_an_unsigned_request_gives_an_unsigned_route() -> None:
    assert route_of("https://h/b/k", None, "k") == Route("https://h/b/", None)


@pytest.mark.parametrize("url, auth, key", [
    ("http://h/b/other", AUTH, "k"),  # the URL does not end in the key
    ("http://h/b/k", "AWS4-ECDSA-P256-SHA256 Credential=AKID/20261201/s3/aws4_request, x", "k"),  # SigV4a
    ("http://h/b/k", "AWS AKID:signature", "k"),  # SigV2
    ("http://h/b/k", AUTH.replace("/s3/", "/s3express/"), "k"),
    ("http://h/b/", AUTH, ""),
])
def test_requests_that_cannot_be_reproduced_give_no_route(url: str, auth: str, key: str) -> None:
    assert route_of(url, auth, key) is None


@given(st.text(min_size=1, max_size=40).filter(lambda k: "\x00" not in k))
def test_every_key_round_trips_through_its_route(key: str) -> None:
    prefix = "http://127.0.0.1:1/b/"
    route = route_of(prefix + quote_key(key), AUTH, key)
    assert route is not None and route.prefix == prefix


def test_quote_key_keeps_slash_and_tilde_and_escapes_the_rest() -> None:
    assert quote_key("a b/c~d+e%f?g#h") == "a%20b/c~d%2Be%25f%3Fg%23h"
    assert quote_key("ü") == "%C3%BC"


def test_error_of_reads_code_and_message_of_an_s3_error_document() -> None:
    body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
            b"<Message>The specified key does not exist.</Message><Key>k</Key></Error>")
    assert error_of(404, body) == {"Code": "NoSuchKey", "Message": "The specified key does not exist."}


@pytest.mark.parametrize("body", [b"", b"<html><body>Bad gateway</body></html>", b"not xml <", b"<Other/>"])
def test_error_of_falls_back_to_the_status_code(body: bytes) -> None:
    assert error_of(502, body) == {"Code": "502", "Message": ""}


def test_checksum_of_picks_a_full_object_checksum_it_can_compute() -> None:
    assert checksum_of({"x-amz-checksum-crc32": "AAAAAA=="}) == ("crc32", "AAAAAA==")
    assert checksum_of({"x-amz-checksum-crc32": "a", "x-amz-checksum-sha256": "b"}) == ("sha256", "b")
    assert checksum_of({"x-amz-checksum-crc32c": "a"}) is None  # needs awscrt, as in botocore
    assert checksum_of({"x-amz-checksum-crc32": "abcd-3"}) is None  # composite, of parts
    assert checksum_of({"x-amz-checksum-crc32": "abcd", "x-amz-checksum-type": "COMPOSITE"}) is None
    assert checksum_of({}) is None


@pytest.mark.parametrize("algorithm", ["crc32", "sha1", "sha256"])
def test_the_running_digest_matches_the_whole_body_digest(algorithm: str) -> None:
    data = bytes(range(256)) * 100
    digest = _Digest(algorithm)
    for i in range(0, len(data), 999):
        digest.update(data[i:i + 999])
    whole = zlib.crc32(data).to_bytes(4, "big") if algorithm == "crc32" else hashlib.new(algorithm, data).digest()
    assert digest.b64() == base64.b64encode(whole).decode()


def test_direct_requests_are_off_behind_a_proxy_or_when_turned_off() -> None:
    assert enabled({})
    assert not enabled({"HTTPS_PROXY": "http://proxy:3128"})
    assert not enabled({"http_proxy": "http://proxy:3128"})
    assert not enabled({"POS3_DIRECT": "0"})
    assert enabled({"POS3_DIRECT": "1", "https_proxy": ""})


def test_a_listing_learns_the_bucket_route_in_both_addressing_styles() -> None:
    path = route_of("http://127.0.0.1:9000/bkt?list-type=2&prefix=a%2F", AUTH, None, "bkt")
    assert path == Route("http://127.0.0.1:9000/bkt/", "eu-west-3")
    assert path.bucket_url == "http://127.0.0.1:9000/bkt"
    virtual = route_of("https://bkt.s3.eu-west-3.amazonaws.com/?list-type=2", AUTH, None, "bkt")
    assert virtual == Route("https://bkt.s3.eu-west-3.amazonaws.com/", "eu-west-3")
    assert virtual.bucket_url == "https://bkt.s3.eu-west-3.amazonaws.com/"
    assert route_of("http://h/other?list-type=2", AUTH, None, "bkt") is None


def test_list_query_is_sorted_and_rfc3986_encoded() -> None:
    q = list_query({"Bucket": "b", "Prefix": "a b/ü+~", "MaxKeys": 1000, "ContinuationToken": "x/y=="})
    assert q == ("continuation-token=x%2Fy%3D%3D&encoding-type=url&list-type=2&max-keys=1000"
                 "&prefix=a%20b%2F%C3%BC%2B~")


def test_listing_of_reads_a_page_and_url_decodes_keys() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>d%2F</Prefix>
<KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
<NextContinuationToken>tok+1</NextContinuationToken>
<Contents><Key>d/a+b%2Bc.bin</Key><LastModified>2026-12-01T04:13:13.000Z</LastModified>
<ETag>&quot;3e81&quot;</ETag><Size>16384</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>d/%C3%BC</Key><LastModified>2026-12-01T04:13:14.000Z</LastModified><ETag>"x-2"</ETag><Size>0</Size></Contents>
<CommonPrefixes><Prefix>d/sub%20dir/</Prefix></CommonPrefixes></ListBucketResult>"""
    page = listing_of(body)
    assert page["IsTruncated"] is True and page["NextContinuationToken"] == "tok+1"
    assert page["Contents"] == [
        {"Key": "d/a b+c.bin", "LastModified": "2026-12-01T04:13:13.000Z", "ETag": '"3e81"', "Size": 16384},
        {"Key": "d/ü", "LastModified": "2026-12-01T04:13:14.000Z", "ETag": '"x-2"', "Size": 0},
    ]
    assert page["CommonPrefixes"] == [{"Prefix": "d/sub dir/"}]


def test_an_empty_last_page() -> None:
    page = listing_of(b"<ListBucketResult><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>")
    assert page["Contents"] == [] and page["CommonPrefixes"] == [] and page["IsTruncated"] is False
