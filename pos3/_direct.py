"""GETs, PUTs, HEADs and listing pages, signed as botocore signs them and sent straight over HTTP.

botocore prepares every request through a general pipeline (about twenty events, parameter
serialization, endpoint rules, a response parser). On two shared cores that costs about 2 ms of
CPU per request, more than the HTTP exchange itself, and for thousands of small objects it is
what bounds the speed (`docs/performance.md`). A GET, PUT or HEAD of one object, a HEAD of a
bucket and a ListObjectsV2 page need little of it, so `pos3._s3.S3` sends those through `Direct`
once it knows the bucket's route (learned in this run, or remembered from an earlier one:
`pos3._routes`); every other request, and the first ones of each bucket, go through botocore.
A listing of 100,000 objects parsed by botocore costs about 13 s of CPU here; parsed with
ElementTree, about a tenth of that.

What stays botocore's, so that both paths send the same request:

- **Where.** A bucket's URL and signing region are learned from botocore's own request for it
  (the ``before-send`` event, see `Direct.learn`): addressing style, endpoint rules and region
  redirects stay botocore's. An answer that says the route is wrong (a redirect, a malformed
  authorization) makes the caller forget it and send that request through botocore again.
- **Signature.** SigV4 as botocore's S3 signer computes it (`pos3._sigv4`, tested header for
  header against botocore's), with the client's own credentials (refreshed when botocore would
  refresh them); no signature for a public profile. Over HTTP the body is signed (SHA-256), over
  HTTPS it is covered by TLS and the checksum header, as botocore does, and the client's
  ``s3.payload_signing_enabled`` setting is honoured.
- **Checksums.** A PUT carries the CRC32 header botocore sends (``Content-MD5`` where the profile
  asks for checksums only when required); the server refuses a body that does not match. A GET
  asks for the object's checksum and checks a full-object CRC32, SHA-1 or SHA-256 unless the
  caller checks the body against pos3's own fingerprint (xxh3 metadata or MD5 ETag) anyway.
- **Errors.** An error answer becomes botocore's ``ClientError`` with S3's code and message, and
  connection failures are `pos3._http`'s: `pos3._errors.translate` and the retry rules treat
  them as they treat errors of the botocore path.
- **Connections.** Its own keep-alive connections (`pos3._http`) with the client's pool size,
  timeouts and TLS settings. Not used when the environment configures a proxy (botocore's proxy
  rules apply).

The pure parts (`route_of`, `error_of`, `checksum_of`, `listing_of`, `list_query`) do no I/O;
botocore is imported only for an error answer or by `attach`.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import os
import ssl
import urllib.parse
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._http import Client
from ._policy import etag_is_md5
from ._routes import Preset
from ._s3 import META_XXH3
from ._sigv4 import Signer, payload_hash
from ._version import __version__

__all__ = ["Direct", "Route", "checksum_of", "error_of", "list_query", "listing_of", "route_of"]

# Answers that mean the learned route (URL or signing region) no longer fits the bucket.
REROUTE_CODES = frozenset({"PermanentRedirect", "TemporaryRedirect", "AuthorizationHeaderMalformed",
                           "IllegalLocationConstraintException", "301", "307"})
_SIGV4 = "AWS4-HMAC-SHA256 Credential="
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")
_USER_AGENT = f"pos3/{__version__}"
# The checksums a GET can be checked against without awscrt, strongest first.
_CHECKSUMS = ("sha256", "sha1", "crc32")

# The URL and Authorization header botocore prepared for the request of the running task.
_CAPTURE: contextvars.ContextVar[list[tuple[str, str | None]] | None] = contextvars.ContextVar(
    "pos3_direct_capture", default=None)


@dataclass(frozen=True, slots=True)
class Route:
    """Where one bucket's objects are: ``prefix + quoted key`` is an object's URL.

    ``region`` is the SigV4 signing region; ``None`` for unsigned (public) requests.
    """

    prefix: str
    region: str | None

    @property
    def bucket_url(self) -> str:
        """The bucket's own URL (listings): without the trailing ``/`` in path style."""
        path_style = urllib.parse.urlsplit(self.prefix).path.strip("/") != ""
        return self.prefix[:-1] if path_style else self.prefix


def quote_key(key: str) -> str:
    """An object key as botocore puts it in a URL path (``/`` and ``~`` kept)."""
    return urllib.parse.quote(key, safe="/~")


def route_of(url: str, authorization: str | None, key: str | None, bucket: str = "") -> Route | None:
    """The route of ``bucket``, from a URL and Authorization header botocore sent for ``key``
    (``None``: a request on the bucket itself, a listing).

    ``None`` when the request cannot be reproduced: the URL does not end in the key (or is not
    the bucket's), or it was signed other than by SigV4 for S3 (SigV4a, S3 Express sessions).
    """
    path = url.split("?", 1)[0]
    if key is None:
        parts = urllib.parse.urlsplit(path)
        if path.endswith("/" + quote_key(bucket)) and bucket:
            prefix = path + "/"  # path style: endpoint/bucket
        elif parts.path in ("", "/") and (parts.hostname or "").startswith(bucket + ".") and bucket:
            prefix = path if path.endswith("/") else path + "/"  # virtual-hosted: bucket.endpoint/
        else:
            return None
    else:
        quoted = quote_key(key)
        if not quoted or not path.endswith("/" + quoted):
            return None
        prefix = path[: len(path) - len(quoted)]
    if authorization is None:
        return Route(prefix, None)
    if not authorization.startswith(_SIGV4):
        return None
    scope = authorization[len(_SIGV4):].split(",", 1)[0].split("/")
    if len(scope) != 5 or scope[3] != "s3" or scope[4] != "aws4_request" or not scope[2]:
        return None
    return Route(prefix, scope[2])


def error_of(status: int, body: bytes) -> dict[str, Any]:
    """The ``Error`` part of a botocore error response, from an S3 XML error body.

    A body that is not an S3 error document (a HEAD-like empty answer, a proxy's HTML page)
    gives the status as the code, as botocore does.
    """
    code, message = str(status), ""
    try:
        root = ET.fromstring(body) if body.strip() else None
    except ET.ParseError:
        root = None
    if root is not None and root.tag.rsplit("}", 1)[-1] == "Error":
        found = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in root}
        code = found.get("Code") or code
        message = found.get("Message", "")
    return {"Code": code, "Message": message}


def listing_of(body: bytes) -> dict[str, Any]:
    """A ListObjectsV2 answer as botocore gives it (keys URL-decoded when the server encoded
    them), with ``LastModified`` left as the server's text."""
    root = ET.fromstring(body)
    contents: list[dict[str, Any]] = []
    prefixes: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    for child in root:
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "Contents":
            obj: dict[str, Any] = {}
            for field in child:
                name = field.tag.rsplit("}", 1)[-1]
                if name in ("Key", "ETag", "LastModified"):
                    obj[name] = field.text or ""
                elif name == "Size":
                    obj["Size"] = int(field.text or 0)
            contents.append(obj)
        elif tag == "CommonPrefixes":
            for field in child:
                if field.tag.rsplit("}", 1)[-1] == "Prefix":
                    prefixes.append({"Prefix": field.text or ""})
        elif tag in ("IsTruncated", "NextContinuationToken", "EncodingType", "KeyCount"):
            out[tag] = child.text or ""
    out["IsTruncated"] = out.get("IsTruncated", "").lower() == "true"
    if out.get("EncodingType") == "url":
        for obj in contents:
            obj["Key"] = urllib.parse.unquote_plus(obj.get("Key", ""))
        for p in prefixes:
            p["Prefix"] = urllib.parse.unquote_plus(p["Prefix"])
    out["Contents"] = contents
    out["CommonPrefixes"] = prefixes
    return out


def list_query(params: Mapping[str, Any]) -> str:
    """The query string of a ListObjectsV2 request (``Prefix``, ``MaxKeys``, ``Delimiter``,
    ``ContinuationToken`` as botocore's parameters), encoded as SigV4 wants it (RFC 3986)."""
    names = {"Prefix": "prefix", "MaxKeys": "max-keys", "Delimiter": "delimiter",
             "ContinuationToken": "continuation-token"}
    query = {"list-type": "2", "encoding-type": "url"}
    query.update({names[k]: str(v) for k, v in params.items() if k in names})
    return "&".join(f"{k}={urllib.parse.quote(v, safe='-_.~')}" for k, v in sorted(query.items()))


def checksum_of(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """The full-object checksum of a GET answer that can be checked here: ``(algorithm, base64)``.

    Composite checksums (of multipart uploads, ``-N`` suffix or ``x-amz-checksum-type:
    COMPOSITE``) are not checksums of the body and are left out, as botocore leaves them.
    """
    if headers.get("x-amz-checksum-type", "").upper() == "COMPOSITE":
        return None
    for name in _CHECKSUMS:
        value = headers.get(f"x-amz-checksum-{name}")
        if value and "-" not in value:
            return name, value
    return None


class _Digest:
    """A running checksum of one of `_CHECKSUMS`."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._crc = 0
        self._hash = hashlib.new(algorithm) if algorithm != "crc32" else None

    def update(self, data: bytes) -> None:
        if self._hash is None:
            self._crc = zlib.crc32(data, self._crc)
        else:
            self._hash.update(data)

    def b64(self) -> str:
        raw = self._crc.to_bytes(4, "big") if self._hash is None else self._hash.digest()
        return base64.b64encode(raw).decode()


class Body:
    """The body of a direct GET: ``read(n)`` as botocore's streaming body; checked at its end."""

    def __init__(self, resp: Any, check: tuple[str, str] | None, url: str) -> None:
        self._resp = resp
        self._expected = check[1] if check else ""
        self._digest = _Digest(check[0]) if check else None
        self._url = url

    async def read(self, n: int = -1) -> bytes:
        data: bytes = await self._resp.read(n)
        if self._digest is not None:
            if data:
                self._digest.update(data)
            if not data or n < 0:
                self._verify()
        return data

    def _verify(self) -> None:
        digest, self._digest = self._digest, None
        if digest is not None and digest.b64() != self._expected:
            from botocore.exceptions import FlexibleChecksumError

            raise FlexibleChecksumError(
                error_msg=f"expected {digest.algorithm} {self._expected}, computed {digest.b64()} ({self._url})")

    def close(self) -> None:
        self._resp.close()


def _response(headers: Mapping[str, str], parse_time: Any) -> dict[str, Any]:
    """The fields of a GetObject / PutObject answer that pos3 reads, named as botocore names them."""
    out: dict[str, Any] = {"ETag": headers.get("ETag", "")}
    meta = {k.lower()[len("x-amz-meta-"):]: v for k, v in headers.items() if k.lower().startswith("x-amz-meta-")}
    out["Metadata"] = meta
    for field, header in (("ContentRange", "Content-Range"), ("VersionId", "x-amz-version-id"),
                          ("ServerSideEncryption", "x-amz-server-side-encryption"),
                          ("SSECustomerAlgorithm", "x-amz-server-side-encryption-customer-algorithm")):
        value = headers.get(header)
        if value is not None:
            out[field] = value
    if "Content-Length" in headers:
        out["ContentLength"] = int(headers["Content-Length"])
    if "Last-Modified" in headers:
        out["LastModified"] = parse_time(headers["Last-Modified"])
    return out


def proxied(environ: Mapping[str, str]) -> bool:
    """Whether the environment sends requests through a proxy (then botocore sends them all)."""
    return any(environ.get(name) or environ.get(name.upper()) for name in _PROXY_VARIABLES)


class Direct:
    """Direct GETs, PUTs, HEADs and listing pages for one client (see the module docstring).

    Made with what a botocore client resolved: either the client itself (`attach`), or a preset
    remembered from an earlier run (`pos3._routes`), in which case the botocore client is made
    only when a request needs it, and attached then.

    Args:
        pool: Connections at most (the client's ``max_pool_connections``).
        connect_timeout, read_timeout: As the client's.
        parse_time: Parser of the ``Last-Modified`` header.
        preset: Settings and routes to start with; ``None``: none until `attach`.
        credentials: The preset's credentials (``get_frozen_credentials()``), ``None`` when unsigned.
    """

    def __init__(self, *, pool: int, connect_timeout: float, read_timeout: float, parse_time: Any,
                 preset: Preset | None = None, credentials: Any = None) -> None:
        self._pool = pool
        self._timeouts = (connect_timeout, read_timeout)
        self._parse_time = parse_time
        self._crc = self._ask = True
        self._sign_payload: bool | None = None
        self._verify: bool | str | None = None
        self._routes: dict[str, Route] = {}
        self._http_client: Client | None = None
        self._signers: dict[tuple[Any, str], Signer] = {}
        self._credentials = credentials
        self._frozen: Any = None  # the credentials' values, when they never change
        self._attached = False
        if preset is not None:
            self._crc, self._ask = preset.crc, preset.ask
            self._sign_payload, self._verify = preset.sign_payload, preset.verify
            self._routes = {bucket: Route(prefix, region) for bucket, (prefix, region) in preset.routes.items()}

    def attach(self, client: Any, verify: bool | str | None) -> None:
        """Take credentials and settings from ``client``, and routes from what it sends
        (``verify``: the client's TLS setting)."""
        config = client.meta.config  # the checksum settings botocore resolved for this client
        self._crc = getattr(config, "request_checksum_calculation", None) != "when_required"
        self._ask = getattr(config, "response_checksum_validation", None) != "when_required"
        self._sign_payload = (getattr(config, "s3", None) or {}).get("payload_signing_enabled")
        if verify is None or verify is True:
            from botocore.httpsession import get_cert_path

            verify = get_cert_path(True)  # the CA file botocore trusts by default, remembered as such
        self._verify = verify
        signer = getattr(client, "_request_signer", None)
        self._credentials = getattr(signer, "_credentials", None)
        self._frozen = None
        self._attached = True
        client.meta.events.register("before-send.s3.GetObject", self._seen)
        client.meta.events.register("before-send.s3.PutObject", self._seen)
        client.meta.events.register("before-send.s3.ListObjectsV2", self._seen)

    def preset(self) -> Preset | None:
        """What to remember of this client (`pos3._routes`); ``None`` while nothing is known."""
        if not self._attached and not self._routes:
            return None
        method = getattr(self._credentials, "method", None) if self._credentials is not None else None
        return Preset(method, self._crc, self._ask, self._sign_payload, self._verify,
                      {bucket: (r.prefix, r.region) for bucket, r in self._routes.items()})

    # ---------------------------------------------------------------- routes

    def route(self, bucket: str) -> Route | None:
        return self._routes.get(bucket)

    def has_routes(self) -> bool:
        return bool(self._routes)

    def forget(self, bucket: str) -> None:
        self._routes.pop(bucket, None)

    @staticmethod
    def capture() -> contextvars.Token[list[tuple[str, str | None]] | None]:
        """Record what botocore sends in the running task until `learn` (see `route_of`)."""
        return _CAPTURE.set([])

    def learn(self, token: contextvars.Token[list[tuple[str, str | None]] | None], bucket: str,
              key: str | None) -> None:
        """Take the route of ``bucket`` from the last request botocore sent since `capture`
        (for ``key``, or ``None`` for a listing)."""
        seen = _CAPTURE.get()
        _CAPTURE.reset(token)
        if not seen:
            return
        url, auth = seen[-1]
        if auth is not None and self._credentials is None:
            return  # signed, but the credentials cannot be reached: keep botocore
        found = route_of(url, auth, key, bucket)
        if found is not None:
            self._routes[bucket] = found

    @staticmethod
    def _seen(request: Any = None, **_: Any) -> None:
        seen = _CAPTURE.get()
        if seen is not None and request is not None:
            auth = request.headers.get("Authorization")
            seen.append((str(request.url), auth.decode() if isinstance(auth, bytes) else auth))

    # ---------------------------------------------------------------- requests

    async def _http(self, route: Route) -> Client:
        """The connections, made on first use (a TLS context once an HTTPS route is used)."""
        client = self._http_client
        if client is None:
            connect, read = self._timeouts
            client = self._http_client = Client(limit=self._pool, connect_timeout=connect, read_timeout=read,
                                                tls=None, user_agent=_USER_AGENT)
        if client.tls is None and route.prefix.startswith("https:"):
            context = await _tls_context(self._verify)  # reads the CA file: a thread
            client.tls = client.tls or context  # another task may have set it meanwhile
        return client

    async def _signed(self, method: str, url: str, headers: dict[str, str], body: bytes,
                      route: Route, checksum_header: str | None = None) -> dict[str, str]:
        """``headers`` signed for ``route`` (SigV4, `pos3._sigv4`); as they are for an unsigned route."""
        if route.region is None:
            return headers
        frozen = self._frozen
        if frozen is None:
            frozen = self._credentials.get_frozen_credentials()
            if not isinstance(frozen, tuple):  # aiobotocore's credentials: a coroutine
                frozen = await frozen
            if not hasattr(self._credentials, "refresh_needed"):
                self._frozen = frozen  # credentials that never refresh: read once
        signer = self._signers.get((frozen, route.region))
        if signer is None:
            self._signers.clear()  # one set of credentials at a time: refreshed ones replace the old
            signer = self._signers[(frozen, route.region)] = Signer(frozen.access_key, frozen.secret_key,
                                                                     frozen.token, route.region)
        payload = payload_hash(url, body, checksum_header=checksum_header, signing=self._sign_payload)
        return signer.sign(method, url, headers, payload)

    async def get(self, route: Route, bucket: str, key: str, *, start: int = 0, end: int | None = None,
                  if_match: str | None = None, checked: bool = False) -> tuple[Body, dict[str, Any]]:
        """Open a GET; ``checked``: the caller checks the body against pos3's fingerprint when it can."""
        url = route.prefix + quote_key(key)
        headers: dict[str, str] = {}
        whole = not start and end is None
        if not whole:
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        if if_match:
            headers["If-Match"] = f'"{if_match}"'
        if self._ask and whole:
            headers["x-amz-checksum-mode"] = "ENABLED"
        client = await self._http(route)
        resp = await client.request("GET", url, await self._signed("GET", url, headers, b"", route))
        if resp.status >= 300:
            await _raise_error(resp, "GetObject")
        out = _response(resp.headers, self._parse_time)
        check = checksum_of(resp.headers) if whole and resp.status == 200 else None
        if check is not None and checked and _fingerprinted(out):
            check = None  # the caller's xxh3 or MD5 check covers every byte already
        return Body(resp, check, f"s3://{bucket}/{key}"), out

    async def put(self, route: Route, bucket: str, key: str, data: bytes,
                  metadata: Mapping[str, str]) -> dict[str, Any]:
        """PUT ``data`` as ``key`` with ``metadata``; the answer's fields (``ETag``...)."""
        url = route.prefix + quote_key(key)
        headers = {f"x-amz-meta-{k}": v for k, v in metadata.items()}
        if self._crc:
            headers["x-amz-checksum-crc32"] = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
            headers["x-amz-sdk-checksum-algorithm"] = "CRC32"
        else:
            headers["Content-MD5"] = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        headers["Content-Length"] = str(len(data))
        client = await self._http(route)
        signed = await self._signed("PUT", url, headers, data, route,
                                    "x-amz-checksum-crc32" if self._crc else "Content-MD5")
        async with await client.request("PUT", url, signed, data) as resp:
            if resp.status >= 300:
                await _raise_error(resp, "PutObject")
            await resp.read()
            return _response(resp.headers, self._parse_time)

    async def head(self, route: Route, key: str | None) -> dict[str, Any]:
        """HEAD of the object ``key``, or of the bucket itself (``None``): the answer's fields."""
        url = route.prefix + quote_key(key) if key is not None else route.bucket_url
        client = await self._http(route)
        headers = await self._signed("HEAD", url, {}, b"", route)
        async with await client.request("HEAD", url, headers) as resp:
            if resp.status >= 300:
                region = resp.headers.get("x-amz-bucket-region")
                # A HEAD answer has no body to name the error: botocore learns a bucket's other
                # region from this header; here it means the remembered route is wrong.
                wrong = resp.status == 400 and region is not None and region != route.region
                await _raise_error(resp, "HeadObject" if key is not None else "HeadBucket",
                                   "AuthorizationHeaderMalformed" if wrong else None)
            return _response(resp.headers, self._parse_time)

    async def list_page(self, route: Route, params: Mapping[str, Any]) -> dict[str, Any]:
        """One ListObjectsV2 page (``params`` as botocore's: ``Prefix``, ``MaxKeys``...)."""
        url = f"{route.bucket_url}?{list_query(params)}"
        client = await self._http(route)
        headers = await self._signed("GET", url, {}, b"", route)
        async with await client.request("GET", url, headers) as resp:
            if resp.status >= 300:
                await _raise_error(resp, "ListObjectsV2")
            body: bytes = await resp.read()
        page = listing_of(body)
        for obj in page["Contents"]:
            obj["LastModified"] = self._parse_time(obj["LastModified"]) if obj.get("LastModified") else ""
        return page

    async def aclose(self) -> None:
        if self._http_client is not None:
            client, self._http_client = self._http_client, None
            await client.close()


def _fingerprinted(out: Mapping[str, Any]) -> bool:
    """Whether pos3's own check covers a body with these fields: xxh3 metadata or an MD5 ETag."""
    if META_XXH3 in out.get("Metadata", {}):
        return True
    return etag_is_md5(str(out.get("ETag", "")).strip('"'), sse=str(out.get("ServerSideEncryption", "")),
                               sse_customer=str(out.get("SSECustomerAlgorithm", "")))


async def _raise_error(resp: Any, operation: str, code: str | None = None) -> None:
    """Raise botocore's ``ClientError`` for an error answer (``code``: the error's code, when
    the body cannot tell it)."""
    from botocore.exceptions import ClientError

    try:
        body: bytes = await resp.read()
    finally:
        resp.release()
    meta = {"HTTPStatusCode": resp.status, "HTTPHeaders": {k.lower(): v for k, v in resp.headers.items()}}
    error = error_of(resp.status, body)
    if code is not None:
        error["Code"] = code
    raise ClientError({"Error": error, "ResponseMetadata": meta}, operation)


async def _tls_context(verify: bool | str | None) -> ssl.SSLContext:
    """The TLS context botocore would use: the given CA bundle, else botocore's default chain; no
    check at all for ``verify=False``."""
    import anyio

    def build() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # certificates and host names checked
        if verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        cafile = verify if isinstance(verify, str) else None
        if cafile is None:
            from botocore.httpsession import get_cert_path

            cafile = get_cert_path(True)
        if cafile:
            context.load_verify_locations(cafile)
        else:
            context.load_default_certs()
        return context

    return await anyio.to_thread.run_sync(build)


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether direct requests may be used at all: no proxy, and not turned off by ``POS3_DIRECT=0``."""
    return environ.get("POS3_DIRECT", "1") != "0" and not proxied(environ)
