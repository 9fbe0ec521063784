"""Translation of foreign errors that point to a setting: refused certificates, refused checksums."""

from __future__ import annotations

import ssl

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, SSLError

import pos3
from pos3._errors import certificate_failure, checksum_rejection, translate


def _cert_error(reason: str = "self-signed certificate in certificate chain") -> SSLError:
    inner = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {reason}")
    inner.verify_message = reason
    return SSLError(endpoint_url="https://s3.lab.example.com:7443/bucket?list-type=2", error=inner)


def test_a_refused_certificate_names_the_endpoint_the_reason_and_the_settings() -> None:
    exc = _cert_error()
    assert certificate_failure(exc) == "self-signed certificate in certificate chain"
    err = translate(exc, "s3://bucket/k")
    assert isinstance(err, pos3.EndpointError) and isinstance(err, ConnectionError)
    message = str(err)
    assert message.startswith("s3://bucket/k: the TLS certificate of https://s3.lab.example.com:7443 was refused")
    for setting in ("ca_bundle", "--ca-bundle", "AWS_CA_BUNDLE", "verify=False", "--no-verify-ssl"):
        assert setting in message


def test_the_reason_is_found_in_the_message_when_the_chain_is_lost() -> None:
    exc = RuntimeError("SSL validation failed [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
                       "IP address mismatch (_ssl.c:1006)")
    assert "IP address mismatch" in (certificate_failure(exc) or "")


@pytest.mark.parametrize("exc", [
    EndpointConnectionError(endpoint_url="https://s3.example.com"),
    ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
    OSError("connection reset"),
])
def test_other_connection_errors_are_not_certificate_failures(exc: BaseException) -> None:
    assert certificate_failure(exc) is None


def _client_error(code: str, message: str, operation: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


@pytest.mark.parametrize(("code", "message", "operation"), [
    ("InvalidArgument", "Unsupported header 'x-amz-checksum-crc32' received for this API call.", "PutObject"),
    ("NotImplemented", "A header you provided implies functionality that is not implemented", "UploadPart"),
    ("InvalidArgument", "Unsupported header 'x-amz-checksum-mode' received for this API call.", "GetObject"),
    ("XAmzContentSHA256Mismatch", "", "PutObject"),
    ("InvalidRequest", "aws-chunked encoding is not supported", "PutObject"),
])
def test_refused_checksums_point_to_when_required(code: str, message: str, operation: str) -> None:
    assert checksum_rejection(code, message, operation)
    err = translate(_client_error(code, message, operation), "s3://bucket/k")
    assert isinstance(err, pos3.S3Error) and err.code == code
    assert 'request_checksum="when_required"' in str(err) and code in str(err)


@pytest.mark.parametrize(("code", "message", "operation"), [
    ("InvalidArgument", "Invalid version id specified", "GetObject"),
    ("InvalidBucketState", "The request is not valid with the current state of the bucket.", "PutObject"),
    ("NotImplemented", "", "ListObjectsV2"),
])
def test_other_refusals_get_no_checksum_hint(code: str, message: str, operation: str) -> None:
    assert not checksum_rejection(code, message, operation)
    assert "when_required" not in str(translate(_client_error(code, message, operation), "s3://bucket/k"))


@pytest.mark.parametrize("code", ["BadDigest", "XAmzContentChecksumMismatch"])
def test_a_body_the_server_found_damaged_is_an_integrity_error(code: str) -> None:
    # An IntegrityError is what makes an upload send the body again (up to RetrySettings.repairs).
    out = translate(_client_error(code, "The Content-MD5 you specified did not match what we received.",
                                  "PutObject"), "s3://b/k")
    assert isinstance(out, pos3.IntegrityError) and "s3://b/k" in str(out) and code in str(out)


def test_aiohttp_timeouts_say_what_timed_out() -> None:
    import aiohttp

    read = translate(aiohttp.ServerTimeoutError("Timeout on reading data from socket"), "s3://b/k")
    assert isinstance(read, pos3.S3Error) and "did not answer in time" in str(read)
    connect = translate(aiohttp.ConnectionTimeoutError("Connection timeout to host http://h"), "s3://b/k")
    assert isinstance(connect, pos3.S3Error) and "cannot reach the endpoint" in str(connect)
