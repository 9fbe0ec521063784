"""The only module that imports aiobotocore: clients, listing, GET, PUT, multipart, delete.

One client per (profile, event loop), created lazily and closed by the mirror that owns the
`ClientPool`. Every call translates foreign errors once, with `_errors.translate`.

aiobotocore and botocore are imported only when the first client is made (`ClientPool.get`):
``import pos3``, ``pos3 --help`` and plans that need no request do not pay their import time
(about 0.3 s). A test pins this (``tests/unit/test_lazy_import.py``).
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import os
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ._errors import IntegrityError, NotFoundError, ProfileError, certificate_failure, translate
from ._plan import RemoteFile
from ._profiles import Profile, tls_verify

if TYPE_CHECKING:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession
    from types_aiobotocore_s3 import S3Client

__all__ = ["S3", "ClientOptions", "ClientPool", "Listing"]

META_XXH3 = "pos3-xxh3"
ABORT_BOUND = 60.0  # seconds an abort of a multipart upload may take, even under cancellation


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """How clients talk to S3 (set from `pos3.mirror` arguments).

    Attributes:
        max_pool_connections: Connection pool size; at least the transfer concurrency.
        connect_timeout: Seconds to open a connection.
        read_timeout: Seconds without a byte before a read fails.
        retry_mode: botocore retry mode, ``"standard"`` or ``"adaptive"``.
        max_attempts: Total attempts per request, first one included.
        verify: TLS certificate checks of every client, overriding each profile's and the
            default chain's: ``None`` (keep theirs), ``False`` (no check) or the path of a CA
            bundle (the command line's ``--no-verify-ssl`` and ``--ca-bundle``).
    """

    max_pool_connections: int = 20
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retry_mode: str = "standard"
    max_attempts: int = 5
    verify: bool | str | None = None


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
    """S3 operations on one client, with errors translated and URLs in every message."""

    def __init__(self, client: S3Client) -> None:
        self.client = client

    async def _pages(self, bucket: str, prefix: str, delimiter: str = "") -> AsyncIterator[Mapping[str, Any]]:
        """Every ListObjectsV2 page below ``prefix``; errors translated once, here."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1000}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        while True:
            try:
                page = await self.client.list_objects_v2(**kwargs)
            except Exception as exc:
                raise translate(exc, f"s3://{bucket}/{prefix}") from None
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token

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
        try:
            page = await self.client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except Exception as exc:
            raise translate(exc, f"s3://{bucket}/{prefix}") from exc
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
        try:
            resp = await self.client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            err = translate(exc, f"s3://{bucket}/{key}")
            if isinstance(err, NotFoundError) and err.code != "NoSuchBucket":
                # HEAD has no body: a missing bucket also answers 404. Tell them apart.
                await self.list_all(bucket, key + "\x7f")
                return None
            raise err from None
        return dict(resp)

    @contextlib.asynccontextmanager
    async def get(self, bucket: str, key: str, start: int = 0, end: int | None = None,
                  if_match: str | None = None) -> AsyncIterator[tuple[Any, Mapping[str, Any]]]:
        """Open a GET of ``key`` (bytes ``start..end`` inclusive); yields (body, response)."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end}"
        if if_match:
            kwargs["IfMatch"] = f'"{if_match}"'
        try:
            resp = await self.client.get_object(**kwargs)
        except Exception as exc:
            raise translate(exc, f"s3://{bucket}/{key}") from None
        body = resp["Body"]
        try:
            yield body, resp
        finally:
            body.close()

    async def put(self, bucket: str, key: str, data: bytes, metadata: Mapping[str, str],
                  md5: str | None = None) -> str:
        """PUT ``data`` as ``key``; returns the new ETag.

        With ``md5`` (the hex MD5 of ``data``), the ETag the server returns is compared with it
        where the ETag is an MD5 (no SSE-KMS): bytes damaged on the way raise `IntegrityError`.
        """
        try:
            resp = await self.client.put_object(Bucket=bucket, Key=key, Body=data, Metadata=dict(metadata))
        except Exception as exc:
            raise translate(exc, f"s3://{bucket}/{key}") from None
        etag = _etag(resp.get("ETag"))
        _check_stored(f"s3://{bucket}/{key}", etag, md5, resp)
        return etag

    async def put_new(self, bucket: str, key: str, data: bytes) -> bool:
        """PUT ``data`` as ``key`` only if no object has that key (``If-None-Match: *``).

        Returns:
            Whether it was written; ``False`` when the key exists (412 PreconditionFailed) or a
            concurrent conditional write of it won (409 ConditionalRequestConflict). A server
            that ignores the condition writes anyway (the caller reads back to find out).
        """
        try:
            await self.client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            raise translate(exc, f"s3://{bucket}/{key}") from exc
        return True

    async def create_multipart(self, bucket: str, key: str, metadata: Mapping[str, str]) -> str:
        return (await self.open_multipart(bucket, key, metadata))[0]

    async def open_multipart(self, bucket: str, key: str, metadata: Mapping[str, str]) -> tuple[str, int]:
        """Create a multipart upload: its id, and how many times botocore had to send the request
        (an answer lost on the way may have left another upload open)."""
        try:
            resp = await self.client.create_multipart_upload(Bucket=bucket, Key=key, Metadata=dict(metadata))
        except Exception as exc:
            raise translate(exc, f"s3://{bucket}/{key}") from None
        return str(resp["UploadId"]), int(resp.get("ResponseMetadata", {}).get("RetryAttempts", 0)) + 1

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int, data: bytes,
                          md5: str | None = None) -> str:
        try:
            resp = await self.client.upload_part(
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
            resp = await self.client.complete_multipart_upload(
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
                await self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except Exception as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                return not strict or code in ("NoSuchUpload", "404")
        return not (strict and scope.cancelled_caught)

    async def list_multipart(self, bucket: str, prefix: str) -> list[tuple[str, str, Any]]:
        """Open multipart uploads below ``prefix``: ``(key, upload_id, initiated)``."""
        try:
            resp = await self.client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
        except Exception as exc:
            raise translate(exc, f"s3://{bucket}/{prefix}") from None
        return [(u["Key"], u["UploadId"], u.get("Initiated")) for u in resp.get("Uploads", ())]

    async def delete_many(self, bucket: str, keys: list[str]) -> list[tuple[str, BaseException]]:
        """Delete up to 1000 keys in one request; returns the keys that failed, with why."""
        if not keys:
            return []
        try:
            resp = await self.client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
            )
        except Exception as exc:
            err = translate(exc, f"s3://{bucket}/{keys[0]}")
            return [(k, err) for k in keys]
        failed: list[tuple[str, BaseException]] = []
        errors: list[Mapping[str, Any]] = list(resp.get("Errors", ()))
        for e in errors:
            key = e.get("Key", "")
            failed.append((key, OSError(f"s3://{bucket}/{key}: delete failed ({e.get('Code')}: {e.get('Message')})")))
        return failed

    async def buckets(self) -> list[str]:
        """The names of the buckets these credentials own (``ListBuckets``), sorted."""
        try:
            resp = await self.client.list_buckets()
        except Exception as exc:
            raise translate(exc, "s3://") from None
        return sorted(str(b.get("Name", "")) for b in resp.get("Buckets", ()))

    async def bucket_missing(self, bucket: str) -> bool:
        """Whether ``bucket`` certainly does not exist: one ``HeadBucket``.

        Only a 404 answer says so. A 403 says nothing (credentials allowed to ``PutObject`` but
        not to ``HeadBucket`` / ``ListBucket`` are common for upload-only roles), and any other
        error is left for the transfer itself to meet and report.
        """
        try:
            await self.client.head_bucket(Bucket=bucket)
        except Exception as exc:
            err = translate(exc, f"s3://{bucket}/")
            return isinstance(err, NotFoundError)
        return False


def _isolated_session() -> AioSession:
    """A session that reads no AWS environment variable and no ``~/.aws`` file, and changes none.

    Every setting comes from the client's arguments or botocore's built-in defaults: a broken
    ``AWS_PROFILE``, ``AWS_CONFIG_FILE`` or ``AWS_DEFAULT_REGION`` in the environment cannot reach
    a profile that carries its own credentials (or none, when public).
    """
    from aiobotocore.session import AioSession
    from botocore.configprovider import (
        BOTOCORE_DEFAUT_SESSION_VARIABLES,
        DEFAULT_PROXIES_CONFIG_VARS,
        DEFAULT_S3_CONFIG_VARS,
        ConfigChainFactory,
        ConfigValueStore,
        SectionConfigProvider,
    )

    no_env = {
        name: (config_name, None, os.devnull if name in ("config_file", "credentials_file") else default, convert)
        for name, (config_name, _env, default, convert) in BOTOCORE_DEFAUT_SESSION_VARIABLES.items()
    }
    session = AioSession(session_vars=no_env)
    chains = ConfigChainFactory(session=session, environ={})

    def mapping(variables: Mapping[str, tuple[Any, Any, Any, Any]]) -> dict[str, Any]:
        return {
            name: chains.create_config_chain(
                instance_name=name, env_var_names=None, config_property_names=config_name, default=default,
                conversion_func=convert,
            )
            for name, (config_name, _env, default, convert) in variables.items()
        }

    store = mapping(no_env)
    store["s3"] = SectionConfigProvider("s3", session, mapping(DEFAULT_S3_CONFIG_VARS))
    store["proxies_config"] = SectionConfigProvider("proxies_config", session, mapping(DEFAULT_PROXIES_CONFIG_VARS))
    session.register_component("config_store", ConfigValueStore(mapping=store))
    return session


def parse_timestamp(value: str) -> datetime.datetime:
    """S3's ISO 8601 (listings) and RFC 7231 (headers) timestamps, fast; anything else via botocore."""
    try:
        if value[:4].isdigit():
            stamp = datetime.datetime.fromisoformat(value)
        else:
            stamp = email.utils.parsedate_to_datetime(value)
        return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=datetime.UTC)
    except (ValueError, TypeError, IndexError):
        from botocore.utils import parse_timestamp as botocore_parse_timestamp

        return botocore_parse_timestamp(value)  # type: ignore[no-any-return]


def _fail_fast_on_certificate_failure(caught_exception: BaseException | None = None, **_: Any) -> None:
    """A ``needs-retry`` handler: a refused certificate is a setting to fix; raise it now, no retries."""
    if caught_exception is not None and certificate_failure(caught_exception) is not None:
        raise caught_exception


def _lean(client: Any) -> None:
    """Drop per-request work whose result pos3 does not need.

    botocore rebuilds the User-Agent header for every request (a ``request-created`` handler) to
    list the SDK features used so far; the header built at client creation is kept instead. This
    touches no signature, checksum or retry: only the User-Agent text sent.
    """
    creator = getattr(client, "_user_agent_creator", None)
    handler = getattr(creator, "rebuild_and_replace_user_agent_handler", None)
    if handler is not None:
        client.meta.events.unregister("request-created.s3", handler)


THROTTLE_CODES = frozenset({"SlowDown", "503", "ServiceUnavailable", "Throttling", "ThrottlingException",
                            "RequestLimitExceeded", "TooManyRequests", "429", "RequestThrottled"})


class ClientPool:
    """One aiobotocore client per profile, on the loop that created the pool; closed with it.

    ``on_throttle`` is called for every throttling answer (503 SlowDown...), including those
    botocore retries by itself, so the whole mirror can back off at once (see
    `_transfer.context.Throttle`).
    """

    def __init__(self, options: ClientOptions, on_throttle: Callable[[], None] | None = None) -> None:
        self._options = options
        self._on_throttle = on_throttle
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[Profile | None, S3] = {}
        self._lock = anyio.Lock()

    def _config(self, profile: Profile | None) -> AioConfig:
        from aiobotocore.config import AioConfig
        from botocore import UNSIGNED

        o = self._options
        kwargs: dict[str, Any] = {
            "max_pool_connections": o.max_pool_connections,
            "connect_timeout": o.connect_timeout,
            "read_timeout": o.read_timeout,
            "retries": {"mode": o.retry_mode, "total_max_attempts": o.max_attempts},
            "tcp_keepalive": True,
            # pos3 builds every request's parameters itself, from typed values: botocore's schema
            # walk over them finds nothing and costs CPU on every request.
            "parameter_validation": False,
        }
        if profile is not None:
            kwargs["s3"] = {"addressing_style": profile.addressing_style}
            kwargs["request_checksum_calculation"] = profile.request_checksum
            kwargs["response_checksum_validation"] = profile.request_checksum
            if profile.public:
                kwargs["signature_version"] = UNSIGNED
        return AioConfig(**kwargs)

    def _session(self, profile: Profile | None) -> AioSession:
        from aiobotocore.session import AioSession

        if profile is not None and (profile.has_credentials or profile.public):
            session = _isolated_session()
        else:
            session = AioSession()
        # botocore parses every timestamp with dateutil, a large share of the client CPU per
        # request; S3 sends two fixed formats, parsed here by the standard library instead.
        session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
        return session

    async def get(self, profile: Profile | None) -> S3:
        """The client for ``profile`` (``None``: botocore's default chain)."""
        found = self._clients.get(profile)
        if found is not None:
            return found
        async with self._lock:
            found = self._clients.get(profile)
            if found is not None:
                return found
            kwargs: dict[str, Any] = {"config": self._config(profile)}
            verify, source = tls_verify(profile, os.environ)
            if self._options.verify is not None:
                verify, source = self._options.verify, "--ca-bundle"
            if isinstance(verify, str):
                if not os.path.isfile(verify):
                    raise ProfileError(f"{source}: CA bundle {verify} is not a readable file")
                kwargs["verify"] = verify
            elif verify is False:
                kwargs["verify"] = False
            if profile is not None:
                kwargs["endpoint_url"] = profile.endpoint
                kwargs["region_name"] = profile.region or "us-east-1"
                if profile.has_credentials:
                    kwargs["aws_access_key_id"] = profile.access_key
                    kwargs["aws_secret_access_key"] = profile.secret_key
                    kwargs["aws_session_token"] = profile.session_token
            try:
                creator = self._session(profile).create_client("s3", **kwargs)
                client = await self._stack.enter_async_context(creator)
                if self._on_throttle is not None:
                    client.meta.events.register("needs-retry.s3", self._observe)
                _lean(client)
            except Exception as exc:
                # E.g. AWS_PROFILE names a profile ~/.aws does not have (ProfileNotFound).
                where = profile.endpoint if profile is not None else "the default AWS configuration"
                raise translate(exc, where) from None
            # Registered first, so it runs before botocore's retry handler decides to retry.
            client.meta.events.register_first("needs-retry.s3", _fail_fast_on_certificate_failure)
            found = self._clients[profile] = S3(client)
            return found

    def _observe(self, response: Any = None, **_: Any) -> None:
        """botocore's ``needs-retry`` event, observed only (returns ``None``: botocore decides)."""
        if self._on_throttle is None or not isinstance(response, tuple) or len(response) != 2:
            return
        parsed = response[1] if isinstance(response[1], Mapping) else {}
        status = getattr(response[0], "status_code", 0)
        code = str(parsed.get("Error", {}).get("Code", ""))
        if code in THROTTLE_CODES or status in (429, 503):
            self._on_throttle()

    async def aclose(self) -> None:
        """Close every client."""
        with anyio.CancelScope(shield=True):
            await self._stack.aclose()
        self._clients.clear()
