"""The pos3 exception tree, and the one place foreign errors are translated.

```
Pos3Error
├── InvalidURLError            (also ValueError)    a URL pos3 cannot use
├── UnsafeKeyError             (also ValueError)    a key that would escape its folder or collide
├── RegistrationError          (also ValueError)    a download/upload that conflicts with another
├── ProfileError               (also ValueError)    an unknown, empty or malformed profile
├── NoMirrorError              (also RuntimeError)  a call outside any mirror(), or a nested one
├── LockTimeoutError           (also TimeoutError)  another process holds a local folder too long
├── S3Error                                         a request S3 refused or could not answer
│   ├── NotFoundError          (also FileNotFoundError)  missing bucket, key or empty prefix
│   ├── AccessDeniedError      (also PermissionError)    credentials lack the permission
│   └── EndpointError          (also ConnectionError)    unreachable endpoint, timeout
├── IntegrityError                                  downloaded bytes do not match the known checksum
├── AsyncioRequiredError       (also RuntimeError)  an async API used under trio: pos3 needs asyncio
└── TransferError              (also RuntimeError)  one or more objects of a batch failed
                                                    (also PermissionError / FileNotFoundError
                                                    when every object failed for that reason)
```

Only `translate()` looks inside botocore, aiohttp and `pos3._http` exceptions; everything else in pos3 sees the
tree above. Messages name the URL or path and the cause, never a credential. A translated error
is raised ``from None`` (its traceback does not repeat the library internals below it) and keeps
the foreign exception on its ``cause`` attribute. The classes present themselves as ``pos3.X``
in tracebacks, never by a private module or class name.
"""

from __future__ import annotations

import errno
import re
import urllib.parse
from collections.abc import Sequence
from typing import NamedTuple

__all__ = [
    "AccessDeniedError",
    "AsyncioRequiredError",
    "EndpointError",
    "Failure",
    "IntegrityError",
    "InvalidURLError",
    "LockTimeoutError",
    "NoMirrorError",
    "NotFoundError",
    "Pos3Error",
    "ProfileError",
    "RegistrationError",
    "S3Error",
    "TransferError",
    "UnsafeKeyError",
    "certificate_failure",
    "describe",
    "translate",
]


class Pos3Error(Exception):
    """Base class of every error pos3 raises on purpose.

    Attributes:
        cause: The foreign exception (botocore, aiohttp) this error was translated from, or
            ``None``. It is kept here rather than chained, so tracebacks stay short.
    """

    cause: BaseException | None = None


class AsyncioRequiredError(Pos3Error, RuntimeError):
    """pos3's async API was used under an event loop other than asyncio (trio).

    aiobotocore, which pos3 talks to S3 with, runs only on asyncio: use ``asyncio.run`` (or
    ``anyio.run(..., backend="asyncio")``), or the synchronous ``pos3.mirror()``.
    """


class InvalidURLError(Pos3Error, ValueError):
    """A string that looks like a URL but is not a usable ``s3://bucket/key`` URL."""


class UnsafeKeyError(Pos3Error, ValueError):
    """An object key that cannot become a local path safely (escape, NUL, collision)."""


class RegistrationError(Pos3Error, ValueError):
    """A download or upload that conflicts with one already registered in this mirror."""


class ProfileError(Pos3Error, ValueError):
    """An unknown, empty or malformed profile, or a malformed profile registry file."""


class NoMirrorError(Pos3Error, RuntimeError):
    """A module-level call outside ``pos3.mirror()``, a nested mirror, or a forked child."""


class LockTimeoutError(Pos3Error, TimeoutError):
    """Another process (or mirror) kept a local folder locked longer than the wait allows."""


class S3Error(Pos3Error):
    """A request that S3 refused or could not answer.

    Attributes:
        url: The ``s3://`` URL the request was about.
        code: The S3 error code (``NoSuchBucket``, ``AccessDenied``...) or ``None``.
    """

    def __init__(self, message: str, *, url: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.code = code


class NotFoundError(S3Error, FileNotFoundError):
    """The bucket, the key or every object under a prefix does not exist."""


class AccessDeniedError(S3Error, PermissionError):
    """The credentials in use may not perform this request."""


class EndpointError(S3Error, ConnectionError):
    """The endpoint could not be reached or did not answer in time."""


class IntegrityError(Pos3Error):
    """Downloaded or uploaded bytes do not match the checksum known for the object."""


class Failure(NamedTuple):
    """One object that failed in a batch: what it was, and why."""

    target: str
    error: BaseException


def describe(failure: Failure) -> str:
    """``target: cause`` for one failed object, naming the target once."""
    text = str(failure.error) or type(failure.error).__name__
    # pos3's own errors already start with the URL or path they are about: say it once.
    return text if text.startswith(failure.target) else f"{failure.target}: {text}"



class TransferError(Pos3Error, RuntimeError):
    """One or more objects of a download, upload or delete batch failed.

    Every other object of the batch was still transferred. The message names the failed
    objects (the first few and a count when there are many).

    Attributes:
        operation: ``"download"``, ``"upload"`` or ``"delete"``.
        failures: Every failed object with its error, as ``(target, error)`` pairs.
    """

    _SHOWN = 5

    def __init__(self, operation: str, failures: Sequence[Failure]) -> None:
        self.operation = operation
        self.failures: list[Failure] = list(failures)
        shown = "; ".join(describe(f) for f in self.failures[: self._SHOWN])
        more = len(self.failures) - self._SHOWN
        tail = f"; and {more} more" if more > 0 else ""
        count = len(self.failures)
        noun = "object" if count == 1 else "objects"
        super().__init__(f"{operation} failed for {count} {noun}: {shown}{tail}")

    def __reduce__(self) -> tuple[object, tuple[str, list[Failure]]]:
        return (TransferError.of, (self.operation, self.failures))

    @classmethod
    def of(cls, operation: str, failures: Sequence[Failure]) -> TransferError:
        """The `TransferError` for ``failures``; when every object failed for one reason (all
        denied, all missing), it is also a `PermissionError` / `FileNotFoundError`, so
        ``except PermissionError`` works as for a single object."""
        kinds = {type(f.error) for f in failures}
        if kinds and all(issubclass(k, AccessDeniedError) for k in kinds):
            return _DeniedTransferError(operation, failures)
        if kinds and all(issubclass(k, NotFoundError) for k in kinds):
            return _MissingTransferError(operation, failures)
        return cls(operation, failures)


class _DeniedTransferError(TransferError, PermissionError):
    """Every object of the batch was refused: a `TransferError` and a `PermissionError`."""


class _MissingTransferError(TransferError, FileNotFoundError):
    """Every object of the batch was missing: a `TransferError` and a `FileNotFoundError`."""


# Tracebacks print ``module.qualname``: show every class as the public ``pos3.X`` a user can
# import and catch (the two batch variants are TransferErrors, and say so).
for _cls in (Pos3Error, InvalidURLError, UnsafeKeyError, RegistrationError, ProfileError, NoMirrorError,
             LockTimeoutError, S3Error, NotFoundError, AccessDeniedError, EndpointError, IntegrityError,
             AsyncioRequiredError, TransferError, _DeniedTransferError, _MissingTransferError):
    _cls.__module__ = "pos3"
for _cls in (_DeniedTransferError, _MissingTransferError):
    _cls.__name__ = _cls.__qualname__ = "TransferError"
del _cls


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it wraps (cause, context, and botocore's / aiohttp's own links)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        e = todo.pop()
        if any(e is s for s in seen):
            continue
        seen.append(e)
        linked = [e.__cause__, e.__context__, getattr(e, "kwargs", {}).get("error"),
                  getattr(e, "certificate_error", None), getattr(e, "os_error", None)]
        todo += [x for x in linked if isinstance(x, BaseException)]
    return seen


def certificate_failure(exc: BaseException) -> str | None:
    """Why the endpoint's TLS certificate was refused, when that is what ``exc`` is about; else ``None``.

    Such a failure is a setting to fix, not a network fault: it is never retried.
    """
    import ssl  # here, not at the top: `pos3 --help` and `--version` import this module

    for e in _chain(exc):
        # aiohttp's ClientConnectorCertificateError is one too, without ssl's attributes.
        if isinstance(e, ssl.SSLCertVerificationError) and getattr(e, "verify_message", None):
            return str(e.verify_message)
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return text.split("CERTIFICATE_VERIFY_FAILED]", 1)[-1].strip(" ()") or "CERTIFICATE_VERIFY_FAILED"
    return None


def _endpoint_of(exc: BaseException) -> str:
    """``https://host:port`` of the request that failed, when the exception says; else ``""``."""
    for e in _chain(exc):
        url = getattr(e, "kwargs", {}).get("endpoint_url")
        if isinstance(url, str) and url:
            parts = urllib.parse.urlsplit(url)
            return f"{parts.scheme}://{parts.netloc}"
    return ""


# Servers without the newer flexible checksums answer a request that carries them (x-amz-checksum-*,
# x-amz-sdk-checksum-algorithm, an aws-chunked body with a trailer) with one of these codes.
_CHECKSUM_CODES = {"InvalidArgument", "NotImplemented", "InvalidRequest", "XAmzContentSHA256Mismatch"}
_CHECKSUM_WORDS = re.compile(r"checksum|chunked|trailer|content-encoding|x-amz-|streaming|not implemented", re.I)
_CHECKSUM_OPERATIONS = {"PutObject", "UploadPart", "CreateMultipartUpload", "CompleteMultipartUpload"}
_CHECKSUM_HINT = ("if the server does not support the newer checksum headers or aws-chunked uploads, set "
                  'request_checksum="when_required" on its Profile (or in profiles.toml); for the default '
                  "credential chain, AWS_REQUEST_CHECKSUM_CALCULATION=when_required and "
                  "AWS_RESPONSE_CHECKSUM_VALIDATION=when_required")


def checksum_rejection(code: str, message: str, operation: str) -> bool:
    """Whether an error answer looks like a server refusing the newer checksum headers or bodies."""
    return code in _CHECKSUM_CODES and (operation in _CHECKSUM_OPERATIONS or bool(_CHECKSUM_WORDS.search(message)))


_TLS_HINT = ("if the server's certificate comes from a private CA, give that CA's certificate as ca_bundle "
             "(Profile, register_profile(), profiles.toml, mirror()), --ca-bundle (command line) or AWS_CA_BUNDLE; "
             "verify=False or --no-verify-ssl turns the check off")

# The server computed another checksum than the request carried: bytes were damaged on the way.
_DAMAGED = {"BadDigest", "XAmzContentChecksumMismatch"}
_NOT_FOUND = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
           "AllAccessDisabled", "ExpiredToken", "InvalidToken"}


def translate(exc: BaseException, url: str) -> BaseException:
    """Turn a foreign exception about ``url`` into one of pos3's, keeping the cause on ``cause``.

    Exceptions that are already pos3's, cancellations and local ``OSError``s pass unchanged.
    """
    if isinstance(exc, Pos3Error):
        return exc
    out = _translate(exc, url)
    if isinstance(out, Pos3Error) and out is not exc:
        out.cause = exc
    return out


def _translate(exc: BaseException, url: str) -> BaseException:
    why = certificate_failure(exc)
    if why is not None:
        where = _endpoint_of(exc)
        subject = f"the TLS certificate of {where}" if where else "the endpoint's TLS certificate"
        return EndpointError(f"{url}: {subject} was refused ({why}); {_TLS_HINT}", url=url)
    from ._http import BodyCut, ConnectFailed, HTTPFailure, ReadTimeout  # direct requests (`pos3._http`)

    if isinstance(exc, ConnectFailed):
        return EndpointError(f"{url}: cannot reach the endpoint ({exc})", url=url)
    if isinstance(exc, ReadTimeout):
        return EndpointError(f"{url}: the endpoint did not answer in time ({exc})", url=url)
    if isinstance(exc, BodyCut):
        return EndpointError(f"{url}: the connection broke while reading the answer ({exc})", url=url)
    if isinstance(exc, HTTPFailure):
        return EndpointError(f"{url}: connection error ({exc})", url=url)
    # Imported lazily: this module stays free of aiobotocore at import time.
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        FlexibleChecksumError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        message = err.get("Message") or ""
        if code in _DAMAGED:
            return IntegrityError(f"{url}: the server refused the bytes it received: they do not match their "
                                  f"checksum ({code})")
        if code == "NoSuchBucket":
            return NotFoundError(f"{url}: bucket does not exist ({code})", url=url, code=code)
        if code in _NOT_FOUND:
            return NotFoundError(f"{url}: no such object ({code})", url=url, code=code)
        if code in _DENIED:
            return AccessDeniedError(
                f"{url}: access denied ({code}); check the credentials or the profile", url=url, code=code
            )
        detail = f"{code}: {message}" if message else code
        if checksum_rejection(code, message, str(getattr(exc, "operation_name", ""))):
            return S3Error(f"{url}: request refused ({detail}); {_CHECKSUM_HINT}", url=url, code=code)
        return S3Error(f"{url}: request failed ({detail})", url=url, code=code)
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return EndpointError(f"{url}: cannot reach the endpoint ({exc})", url=url)
    if isinstance(exc, ReadTimeoutError):
        return EndpointError(f"{url}: the endpoint did not answer in time ({exc})", url=url)
    if isinstance(exc, FlexibleChecksumError):
        # botocore checked the body against the checksum S3 sent (x-amz-checksum-*): bytes were damaged.
        return IntegrityError(f"{url}: content does not match the checksum S3 sent ({exc}); the file was not placed")
    if isinstance(exc, NoCredentialsError):
        return AccessDeniedError(
            f"{url}: no AWS credentials found; configure them or use a public profile", url=url
        )
    if isinstance(exc, BotoCoreError):
        return S3Error(f"{url}: {exc}", url=url)
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - aiohttp comes with aiobotocore
        return exc
    connect_timeout = getattr(aiohttp, "ConnectionTimeoutError", aiohttp.ClientConnectorError)  # aiohttp >= 3.10
    if isinstance(exc, connect_timeout | aiohttp.ClientConnectorError):
        return EndpointError(f"{url}: cannot reach the endpoint ({exc})", url=url)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return EndpointError(f"{url}: the endpoint did not answer in time ({exc})", url=url)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return EndpointError(f"{url}: the connection broke while reading the body ({exc})", url=url)
    if isinstance(exc, aiohttp.ClientError):
        return EndpointError(f"{url}: connection error ({exc})", url=url)
    if isinstance(exc, OSError) and exc.errno == errno.ECONNRESET:
        return EndpointError(f"{url}: connection reset by the server", url=url)
    return exc
