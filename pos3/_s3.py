"""The S3 calls over one aiobotocore client: listing, GET, PUT, multipart, delete.

Clients are made by `pos3._clients.ClientPool`: one per (profile, event loop), created lazily
and closed by the mirror that owns the pool. Every call translates foreign errors once, with
`_errors.translate`.

aiobotocore and botocore are imported only when the first client is made (`ClientPool.get`):
``import pos3``, ``pos3 --help`` and plans that need no request do not pay their import time
(about 0.3 s). A test pins this (``tests/unit/test_lazy_import.py``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._errors import IntegrityError, NotFoundError, translate
from ._plan import RemoteFile
from ._retry import Retrier

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

    from ._direct import Direct, Route

__all__ = ["S3", "Listing"]

META_XXH3 = "pos3-xxh3"
ABORT_BOUND = 60.0  # seconds an abort of a multipart upload may take, even under cancellation
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Listing:
    """Everything below one prefix: file objects and directory-marker keys."""

    files: tuple[RemoteFile, ...]
    markers: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.files and not self.markers


def _etag(value: object) -> str:
    return str(value or "").strip('"')


def _stamp(value: object) -> str:
    iso = getattr(value, "isoformat", None)
    return str(iso()) if callable(iso) else str(value or "")


def _remote_file(obj: Mapping[str, Any]) -> RemoteFile:
    return RemoteFile(obj["Key"], int(obj.get("Size", 0)), _etag(obj.get("ETag")), _stamp(obj.get("LastModified")))


_MD5 = re.compile(r"^[0-9a-f]{32}$")


def _check_stored(what: str, etag: str, md5: str | None, resp: Mapping[str, Any]) -> None:
    """Raise `IntegrityError` when the server stored other bytes than the ones sent."""
    if md5 is None or str(resp.get("ServerSideEncryption", "")).startswith("aws:kms"):
        return
    if _MD5.match(etag) and etag != md5:
        raise IntegrityError(f"{what}: the server stored other bytes than were sent (ETag {etag}, sent MD5 {md5})")


class S3:
    """S3 operations on one client, with errors translated and URLs in every message.

    With a ``retrier`` (the mirror's), the requests that carry no body stream and are safe to send
    again (ListObjectsV2 pages, HEAD, DeleteObjects, ListMultipartUploads, ListBuckets, HeadBucket,
    the conditional PUT of `put_new`) ride out connection failures and throttling here, under the
    mirror's outage budget. GETs and uploads are retried by their callers (`pos3._transfer`),
    which resume from the last good byte or know how to check a lost answer.
    """

    def __init__(self, client: Callable[[], Awaitable[S3Client]], retrier: Retrier | None = None,
                 direct: Direct | None = None) -> None:
        self.client = client  # the botocore client, made when first awaited (see `pos3._routes`)
        self.retrier = retrier
        self.direct = direct

    async def _either(self, bucket: str, key: str | None, url: str,
                      direct_send: Callable[[Direct, Route], Awaitable[T]],
                      botocore_send: Callable[[], Awaitable[T]]) -> T:
        """``direct_send`` once ``bucket``'s route is known, else ``botocore_send``, whose request
        teaches the route (for ``key``; ``None``: a listing). A direct answer that says the route
        is wrong (`pos3._direct.REROUTE_CODES`) forgets it and sends the request through botocore.
        Errors are translated here."""
        direct = self.direct
        if direct is not None:
            route = direct.route(bucket)
            if route is not None:
                from ._direct import REROUTE_CODES

                try:
                    return await direct_send(direct, route)
                except Exception as exc:
                    if getattr(exc, "response", {}).get("Error", {}).get("Code") not in REROUTE_CODES:
                        raise translate(exc, url) from None
                    direct.forget(bucket)
            token = direct.capture()
        try:
            return await botocore_send()
        except Exception as exc:
            raise translate(exc, url) from None
        finally:
            if direct is not None:
                direct.learn(token, bucket, key)

    async def _botocore(self, operation: str, kwargs: Mapping[str, Any]) -> Any:
        """``operation(**kwargs)`` through the botocore client."""
        return await getattr(await self.client(), operation)(**kwargs)

    async def _call(self, url: str, send: Callable[[], Awaitable[T]]) -> T:
        """``send`` (which raises translated errors), retried by the retrier when there is one."""
        if self.retrier is None:
            return await send()
        return await self.retrier.call(url, send)

    async def _pages(self, bucket: str, prefix: str, delimiter: str = "") -> AsyncIterator[Mapping[str, Any]]:
        """Every ListObjectsV2 page below ``prefix``; errors translated once, here."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1000}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        url = f"s3://{bucket}/{prefix}"

        async def send() -> Mapping[str, Any]:
            return await self._list_page(bucket, kwargs, url)

        while True:
            page = await self._call(url, send)  # one page at a time: an outage does not restart the listing
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token

    async def _list_page(self, bucket: str, kwargs: Mapping[str, Any], url: str) -> Mapping[str, Any]:
        """One ListObjectsV2 page: a direct request once the bucket's route is known, else botocore's."""
        return await self._either(bucket, None, url, lambda direct, route: direct.list_page(route, kwargs),
                                  lambda: self._botocore("list_objects_v2", kwargs))

    async def list_all(self, bucket: str, prefix: str) -> Listing:
        """Every object below ``prefix`` (all pages)."""
        files: list[RemoteFile] = []
        markers: list[str] = []
        async for page in self._pages(bucket, prefix):
            for obj in page.get("Contents", ()):
                if obj["Key"].endswith("/"):
                    markers.append(obj["Key"])
                else:
                    files.append(_remote_file(obj))
        return Listing(tuple(files), tuple(markers))

    async def first(self, bucket: str, prefix: str) -> RemoteFile | None:
        """The first object (in key order) whose key starts with ``prefix``: one request.

        Every other key starting with ``prefix`` sorts after ``prefix`` itself, so this tells
        whether an object named exactly ``prefix`` exists without listing what is below it.
        """
        async def send() -> Mapping[str, Any]:
            return await self._list_page(bucket, {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1},
                                         f"s3://{bucket}/{prefix}")

        page = await self._call(f"s3://{bucket}/{prefix}", send)
        contents = page.get("Contents") or ()
        return _remote_file(contents[0]) if contents else None

    async def list_level(self, bucket: str, prefix: str) -> tuple[list[RemoteFile], list[str]]:
        """Objects and sub-prefixes directly below ``prefix`` (one level, ``Delimiter='/'``)."""
        files: list[RemoteFile] = []
        dirs: list[str] = []
        async for page in self._pages(bucket, prefix, "/"):
            files += [_remote_file(obj) for obj in page.get("Contents", ())]
            dirs += [p["Prefix"] for p in page.get("CommonPrefixes", ())]
        return files, dirs

    async def head(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The object's metadata, or ``None`` when it does not exist."""
        async def send() -> dict[str, Any]:
            return dict(await self._either(bucket, key, f"s3://{bucket}/{key}",
                                           lambda direct, route: direct.head(route, key),
                                           lambda: self._botocore("head_object", {"Bucket": bucket, "Key": key})))

        try:
            return await self._call(f"s3://{bucket}/{key}", send)
        except NotFoundError as err:
            if err.code == "NoSuchBucket":
                raise
            # HEAD has no body: a missing bucket also answers 404. Tell them apart.
            await self.list_all(bucket, key + "\x7f")
            return None

    @contextlib.asynccontextmanager
    async def get(self, bucket: str, key: str, start: int = 0, end: int | None = None,
                  if_match: str | None = None, checked: bool = False) -> AsyncIterator[tuple[Any, Mapping[str, Any]]]:
        """Open a GET of ``key`` (bytes ``start..end`` inclusive); yields (body, response).

        ``checked``: the caller checks the body against pos3's fingerprint (xxh3 metadata or MD5
        ETag) where it can, so a direct GET need not check the server's checksum as well.
        """
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end}"
        if if_match:
            kwargs["IfMatch"] = f'"{if_match}"'

        async def botocore_get() -> tuple[Any, Mapping[str, Any]]:
            resp = await (await self.client()).get_object(**kwargs)
            return resp["Body"], resp

        found = await self._either(
            bucket, key, f"s3://{bucket}/{key}",
            lambda direct, route: direct.get(route, bucket, key, start=start, end=end, if_match=if_match,
                                             checked=checked),
            botocore_get)
        body = found[0]
        try:
            yield found
        finally:
            body.close()

    async def put(self, bucket: str, key: str, data: bytes, metadata: Mapping[str, str],
                  md5: str | None = None) -> str:
        """PUT ``data`` as ``key``; returns the new ETag.

        With ``md5`` (the hex MD5 of ``data``), the ETag the server returns is compared with it
        where the ETag is an MD5 (no SSE-KMS): bytes damaged on the way raise `IntegrityError`.
        """
        url = f"s3://{bucket}/{key}"
        resp: Mapping[str, Any] = await self._either(
            bucket, key, url, lambda direct, route: direct.put(route, bucket, key, data, metadata),
            lambda: self._botocore("put_object", {"Bucket": bucket, "Key": key, "Body": data,
                                                   "Metadata": dict(metadata)}))
        etag = _etag(resp.get("ETag"))
        _check_stored(url, etag, md5, resp)
        return etag

    async def put_new(self, bucket: str, key: str, data: bytes) -> bool:
        """PUT ``data`` as ``key`` only if no object has that key (``If-None-Match: *``).

        Returns:
            Whether it was written; ``False`` when the key exists (412 PreconditionFailed) or a
            concurrent conditional write of it won (409 ConditionalRequestConflict). A server
            that ignores the condition writes anyway (the caller reads back to find out).
        """
        async def send() -> bool:
            try:
                await (await self.client()).put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
            except Exception as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                    return False
                raise translate(exc, f"s3://{bucket}/{key}") from exc
            return True

        # A retry of a write whose answer was lost finds its own object there (412): the caller
        # reads the key back to tell its own write from another writer's.
        return await self._call(f"s3://{bucket}/{key}", send)

    async def create_multipart(self, bucket: str, key: str, metadata: Mapping[str, str]) -> str:
        return (await self.open_multipart(bucket, key, metadata))[0]

    async def open_multipart(self, bucket: str, key: str, metadata: Mapping[str, str]) -> tuple[str, int]:
        """Create a multipart upload: its id, and how many times botocore had to send the request
        (an answer lost on the way may have left another upload open)."""
        try:
            resp = await (await self.client()).create_multipart_upload(Bucket=bucket, Key=key, Metadata=dict(metadata))
        except Exception as exc:
            raise translate(exc, f"s3://{bucket}/{key}") from None
        return str(resp["UploadId"]), int(resp.get("ResponseMetadata", {}).get("RetryAttempts", 0)) + 1

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int, data: bytes,
                          md5: str | None = None) -> str:
        try:
            resp = await (await self.client()).upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
        except Exception as exc:
            raise translate(exc, f"s3://{bucket}/{key}") from None
        etag = _etag(resp.get("ETag"))
        _check_stored(f"s3://{bucket}/{key} (part {number})", etag, md5, resp)
        return etag

    async def complete_multipart(self, bucket: str, key: str, upload_id: str, etags: list[str]) -> str:
        parts = [{"PartNumber": i + 1, "ETag": f'"{e}"'} for i, e in enumerate(etags)]
        try:
            resp = await (await self.client()).complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}  # type: ignore[typeddict-item]
            )
        except Exception as exc:
            raise translate(exc, f"s3://{bucket}/{key}") from None
        return _etag(resp.get("ETag"))

    async def abort_multipart(self, bucket: str, key: str, upload_id: str, strict: bool = False) -> bool:
        """Abort an upload (shielded from cancellation, bounded); never raises.

        Returns whether it is gone (aborted now, or already completed or aborted: NoSuchUpload).
        Without ``strict`` every outcome counts as gone. An abort that takes longer than
        `ABORT_BOUND` seconds is given up (not gone: its journal entry stays for the next sync).
        """
        with anyio.move_on_after(ABORT_BOUND, shield=True) as scope:
            try:
                await (await self.client()).abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except Exception as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                return not strict or code in ("NoSuchUpload", "404")
        return not (strict and scope.cancelled_caught)

    async def list_multipart(self, bucket: str, prefix: str) -> list[tuple[str, str, Any]]:
        """Open multipart uploads below ``prefix``: ``(key, upload_id, initiated)``."""
        async def send() -> Mapping[str, Any]:
            try:
                return await (await self.client()).list_multipart_uploads(Bucket=bucket, Prefix=prefix)
            except Exception as exc:
                raise translate(exc, f"s3://{bucket}/{prefix}") from None

        resp = await self._call(f"s3://{bucket}/{prefix}", send)
        return [(u["Key"], u["UploadId"], u.get("Initiated")) for u in resp.get("Uploads", ())]

    async def delete_many(self, bucket: str, keys: list[str]) -> list[tuple[str, BaseException]]:
        """Delete up to 1000 keys in one request; returns the keys that failed, with why."""
        if not keys:
            return []
        async def send() -> Mapping[str, Any]:
            try:
                return await (await self.client()).delete_objects(
                    Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
                )
            except Exception as exc:
                raise translate(exc, f"s3://{bucket}/{keys[0]}") from None

        try:
            resp = await self._call(f"s3://{bucket}/{keys[0]}", send)  # deleting twice is harmless
        except Exception as err:
            return [(k, err) for k in keys]
        failed: list[tuple[str, BaseException]] = []
        errors: list[Mapping[str, Any]] = list(resp.get("Errors", ()))
        for e in errors:
            key = e.get("Key", "")
            failed.append((key, OSError(f"s3://{bucket}/{key}: delete failed ({e.get('Code')}: {e.get('Message')})")))
        return failed

    async def buckets(self) -> list[str]:
        """The names of the buckets these credentials own (``ListBuckets``), sorted."""
        async def send() -> Mapping[str, Any]:
            try:
                return await (await self.client()).list_buckets()
            except Exception as exc:
                raise translate(exc, "s3://") from None

        resp = await self._call("s3://", send)
        return sorted(str(b.get("Name", "")) for b in resp.get("Buckets", ()))

    async def bucket_missing(self, bucket: str) -> bool:
        """Whether ``bucket`` certainly does not exist: one ``HeadBucket``.

        Only a 404 answer says so. A 403 says nothing (credentials allowed to ``PutObject`` but
        not to ``HeadBucket`` / ``ListBucket`` are common for upload-only roles), and any other
        error is left for the transfer itself to meet and report.
        Sent once (botocore's attempts only, not under the outage budget): the answer is advice,
        and the transfer that follows rides out an outage by itself.
        """
        try:
            await self._either(bucket, None, f"s3://{bucket}/", lambda direct, route: direct.head(route, None),
                               lambda: self._botocore("head_bucket", {"Bucket": bucket}))
        except Exception as exc:
            return isinstance(exc, NotFoundError)
        return False
