"""A small HTTP/1.1 client for direct requests (`pos3._direct`): keep-alive connections, nothing more.

A direct request is one GET, PUT, HEAD or listing page to an S3 endpoint, already signed. A
general client does much more per request (aiohttp: cookie jar, tracing signals, URL objects,
redirect handling), and that work is a large share of the client CPU per small object: measured
against moto on the benchmark machine, 0.66 ms of CPU per 16 KiB GET through aiohttp, 0.17 ms
with a plain exchange over the same connections. Importing aiohttp also costs about 0.2 s of CPU
per process. This client speaks just what S3 answers:

- a status line and headers, then a body sized by ``Content-Length`` or sent chunked (none for
  HEAD, 204 and 304); connections are kept and reused unless the server closes them;
- a request on a kept connection that the server had closed meanwhile (no byte of an answer
  came back) is sent once more on a new connection, as every keep-alive client does;
- a connect timeout, and a read timeout between two bytes of an answer (aiohttp's
  ``sock_read``); TLS through the standard library, with the caller's context;
- at most ``limit`` connections at once; a caller waits for a free one.

Failures are `HTTPFailure` (a `ConnectionError`): `ConnectFailed` before a request was sent,
`ReadTimeout` (also a `TimeoutError`) when the server went silent, `BodyCut` when the
connection ended inside a body. `pos3._errors.translate` names the endpoint in each, and the
retry rules treat them as network faults.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any

from ._sigv4 import host_of

__all__ = ["BodyCut", "Client", "ConnectFailed", "HTTPFailure", "ReadTimeout", "Response"]

_BUFFER = 1 << 20  # bytes read ahead of the caller before the socket is paused
_MAX_HEAD = 64 << 10  # a status line and headers longer than this are refused
_CHUNK = 1 << 20  # a body is written in slices of this size, each waiting for the socket to drain


class HTTPFailure(ConnectionError):
    """A direct request failed below HTTP: connection, timeout or a broken answer.

    Attributes:
        kwargs: ``{"endpoint_url": "scheme://host:port"}`` (read by `pos3._errors`).
    """

    def __init__(self, message: str, origin: str) -> None:
        super().__init__(message)
        self.kwargs = {"endpoint_url": origin}


class ConnectFailed(HTTPFailure):
    """No connection could be made (refused, unknown host, TLS handshake, connect timeout)."""


class ReadTimeout(HTTPFailure, TimeoutError):
    """The server sent nothing for the read timeout."""


class BodyCut(HTTPFailure):
    """The connection ended before the whole answer arrived."""


class _Closed(Exception):
    """A kept connection turned out closed before any byte of the answer: send again."""


class _Connection(asyncio.Protocol):
    """One connection: bytes received are buffered for the reader, with a read timeout."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float, origin: str) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._drainer: asyncio.Future[None] | None = None
        self._paused_reading = False
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > _BUFFER and not self._paused_reading and self.transport is not None:
            self._paused_reading = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()
        if self._drainer is not None and not self._drainer.done():
            self._drainer.set_result(None)

    def pause_writing(self) -> None:
        if self._drainer is None or self._drainer.done():
            self._drainer = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drainer is not None and not self._drainer.done():
            self._drainer.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # the reader's side
    async def _more(self) -> None:
        """Wait for more bytes (or the end): `ReadTimeout` after the read timeout of silence."""
        if self.closed:
            return
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(self._read_timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if waiter.result() is _EXPIRED:
            raise ReadTimeout(f"{self.origin}: no answer for {self._read_timeout:g} s", self.origin)

    def _take(self, n: int) -> bytes:
        data = bytes(self._buf[:n])
        del self._buf[:n]
        if self._paused_reading and len(self._buf) <= _BUFFER // 2 and self.transport is not None:
            self._paused_reading = False
            self.transport.resume_reading()
        return data

    async def read_head(self) -> bytes:
        """The status line and headers, up to the blank line; `_Closed` if nothing came at all."""
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                return self._take(end + 4)
            if len(self._buf) > _MAX_HEAD:
                raise BodyCut(f"{self.origin}: an answer's headers exceed {_MAX_HEAD} bytes", self.origin)
            if self.closed:
                if not self._buf:
                    raise _Closed
                raise BodyCut(f"{self.origin}: the connection closed inside an answer's headers", self.origin)
            await self._more()

    async def read_some(self, n: int) -> bytes:
        """Up to ``n`` bytes, at least one; ``b""`` only at the end of the connection."""
        while not self._buf and not self.closed:
            await self._more()
        return self._take(min(n, len(self._buf)))

    async def read_line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                return self._take(end + 2)[:-2]
            if self.closed or len(self._buf) > _MAX_HEAD:
                raise BodyCut(f"{self.origin}: the connection closed inside a chunked body", self.origin)
            await self._more()

    async def write(self, data: bytes | memoryview) -> None:
        """Send ``data``; a connection closed before it is `_Closed`. Once it is sent, the answer
        is read even if the server closed meanwhile: it may have answered first (an error)."""
        if self.closed or self.transport is None:
            raise _Closed
        self.transport.write(data)
        if self._drainer is not None and not self._drainer.done():
            await self._drainer

    def pending(self) -> bool:
        """Whether bytes arrived that no request asked for (then the connection is not reused)."""
        return bool(self._buf)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


_EXPIRED: Any = object()


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_result(_EXPIRED)


class Headers(dict[str, str]):
    """Response headers: names in lowercase; ``get`` and ``[]`` take any case."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name.lower() if isinstance(name, str) else name)


class Response:
    """An answer: ``status``, ``headers``, and the body through `read` (then `release`)."""

    def __init__(self, client: Client, conn: _Connection, status: int, headers: Headers, keep: bool,
                 length: int | None, chunked: bool) -> None:
        self.status = status
        self.headers = headers
        self._client = client
        self._conn: _Connection | None = conn
        self._keep = keep
        self._left = length  # None: until the connection ends (or chunked)
        self._chunked = chunked
        self._chunk_left = 0
        self._done = length == 0

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes of the body (``-1``: all the rest); ``b""`` at its end."""
        if n < 0:
            parts = []
            while part := await self._read(_BUFFER):
                parts.append(part)
            return b"".join(parts)
        return await self._read(n)

    async def _read(self, n: int) -> bytes:
        conn = self._conn
        if self._done or conn is None:
            return b""
        try:
            if self._chunked:
                data = await self._read_chunked(conn, n)
            else:
                want = n if self._left is None else min(n, self._left)
                data = await conn.read_some(want)
                if self._left is not None:
                    if not data:
                        raise BodyCut(f"{conn.origin}: the connection closed with {self._left} bytes of the body "
                                      "still to come", conn.origin)
                    self._left -= len(data)
                    self._done = self._left == 0
                elif not data:
                    self._done = True
        except BaseException:
            self._abandon()
            raise
        if self._done:
            self.release()
        return data

    async def _read_chunked(self, conn: _Connection, n: int) -> bytes:
        if self._chunk_left == 0:
            line = await conn.read_line()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BodyCut(f"{conn.origin}: a chunked body is malformed", conn.origin) from None
            if size == 0:
                while await conn.read_line():  # trailers, up to the blank line
                    pass
                self._done = True
                return b""
            self._chunk_left = size
        data = await conn.read_some(min(n, self._chunk_left))
        if not data:
            raise BodyCut(f"{conn.origin}: the connection closed inside a chunked body", conn.origin)
        self._chunk_left -= len(data)
        if self._chunk_left == 0 and await conn.read_line() != b"":
            raise BodyCut(f"{conn.origin}: a chunked body is malformed", conn.origin)
        return data

    def release(self) -> None:
        """Give the connection back: kept when the whole body was read, else closed."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._client._release(conn, keep=self._keep and self._done)

    def _abandon(self) -> None:
        self._done = False
        self.release()

    def close(self) -> None:
        self.release()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


def _split(url: str) -> tuple[str, str, int, str, str]:
    """``(scheme, host, port, origin, target)`` of an absolute, already encoded URL."""
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    target = slash + path or "/"
    if netloc.startswith("["):  # [IPv6]:port
        host, _, port = netloc[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = netloc.partition(":")
    default = 443 if scheme == "https" else 80
    return scheme, host, int(port) if port else default, f"{scheme}://{netloc}", target


class Client:
    """Keep-alive connections to any number of origins (see the module docstring).

    Args:
        limit: Connections at most, busy ones (idle ones beyond it are closed).
        connect_timeout, read_timeout: Seconds.
        tls: The TLS context of ``https`` URLs (``None``: plain HTTP only; settable later).
        user_agent: The ``User-Agent`` header of every request.
    """

    def __init__(self, *, limit: int, connect_timeout: float, read_timeout: float,
                 tls: ssl.SSLContext | None, user_agent: str) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._limit = limit
        self._timeouts = (connect_timeout, read_timeout)
        self._agent = user_agent
        self.tls = tls
        self._idle: dict[str, list[_Connection]] = {}
        self._hosts: dict[str, str] = {}  # origin -> Host header, as signed (`pos3._sigv4.host_of`)
        self._closed = False

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes = b"") -> Response:
        """Send a request; returns once the answer's headers have arrived (read its body, then
        `Response.release`). ``url`` is sent as it is (already encoded, as it was signed), with
        the ``Host`` header signing assumes (`pos3._sigv4.host_of`)."""
        scheme, host, port, origin, target = _split(url)
        host_header = self._hosts.get(origin)
        if host_header is None:
            host_header = self._hosts[origin] = host_of(origin)
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {self._agent}\r\n"]
        lines += [f"{k}: {v}\r\n" for k, v in headers.items()]
        if body and "Content-Length" not in headers:
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        await self._slots.acquire()
        try:
            for _ in range(2):
                conn, reused = await self._connection(scheme, host, port, origin)
                try:
                    return await self._exchange(conn, method, head, body)
                except _Closed:
                    conn.close()
                    if not reused:
                        raise BodyCut(f"{origin}: the connection closed before an answer", origin) from None
                    self._drop_idle(origin)  # kept ones closed too, most likely (a restart, an idle timeout)
                except BaseException:
                    conn.close()
                    raise
            raise BodyCut(f"{origin}: the connection closed before an answer", origin)
        except BaseException:
            self._slots.release()
            raise

    async def _exchange(self, conn: _Connection, method: str, head: bytes, body: bytes) -> Response:
        if len(body) <= _CHUNK:
            await conn.write(head + body if body else head)
        else:
            await conn.write(head)
            view = memoryview(body)
            for start in range(0, len(body), _CHUNK):
                await conn.write(view[start:start + _CHUNK])
        raw = await conn.read_head()
        status_line, *header_lines = raw[:-4].decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        try:
            status = int(rest[:3])
        except ValueError:
            raise BodyCut(f"{conn.origin}: not an HTTP answer ({status_line[:40]!r})", conn.origin) from None
        headers = Headers()
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length: int | None = None
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            length = 0
        elif not chunked:
            text = headers.get("content-length")
            length = int(text) if text is not None and text.isdigit() else None
            if length is None:
                keep = False  # the body runs until the connection ends
        return Response(self, conn, status, headers, keep, length, chunked)

    async def _connection(self, scheme: str, host: str, port: int, origin: str) -> tuple[_Connection, bool]:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed and not conn.pending():
                return conn, True
            conn.close()
        loop = asyncio.get_running_loop()
        connect, read = self._timeouts
        context = self.tls if scheme == "https" else None
        if scheme == "https" and context is None:
            raise ConnectFailed(f"{origin}: no TLS settings for an https endpoint", origin)
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: _Connection(loop, read, origin), host, port, ssl=context,
                server_hostname=host if context is not None else None), connect)
        except TimeoutError:
            raise ConnectFailed(f"{origin}: no connection within {connect:g} s", origin) from None
        except OSError as exc:
            raise ConnectFailed(f"{origin}: cannot connect ({exc})", origin) from exc
        return conn, False

    def _drop_idle(self, origin: str) -> None:
        for conn in self._idle.pop(origin, ()):
            conn.close()

    def _release(self, conn: _Connection, keep: bool) -> None:
        self._slots.release()
        if keep and not conn.closed and not self._closed:
            idle = self._idle.setdefault(conn.origin, [])
            if len(idle) < self._limit:
                idle.append(conn)
                return
        conn.close()

    async def close(self) -> None:
        """Close every idle connection (busy ones close when released)."""
        self._closed = True
        for origin in list(self._idle):
            self._drop_idle(origin)
